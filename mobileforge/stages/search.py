"""``prune.amount: search``: the verdict on each amount tried, and where the search ended
(:mod:`mobileforge.prune.search` decides which amount comes next)."""

from __future__ import annotations

from typing import Any

from mobileforge import budget, files, records
from mobileforge.job import Job, without_torch
from mobileforge.plan import PrunePoint
from mobileforge.prune import search


@without_torch
def prune_search_step(job: Job) -> None:
    """Whether one tried amount's int8 artifacts are all within ``selection.accuracy_budget``
    top-1 points of their fp32 artifacts (the test ``best`` applies, :mod:`mobileforge.budget`),
    and what is left of the search after it."""
    settings = job.params["step"]
    allowed = float(settings["accuracy_budget"])
    accuracy = {}
    for path in [*job.input["evaluations"], *job.input["reference_evaluations"]]:
        record = records.read(records.Evaluation, path)
        accuracy[record["artifact"]] = record["accuracy"]
    fp32 = {}
    for path in job.input["references"]:
        sidecar = records.read(records.ArtifactSidecar, files.sidecar_path(path))
        fp32[(sidecar["format"], sidecar["backend"])] = accuracy.get(path)
    verdicts: list[dict[str, Any]] = []
    for path in job.input["artifacts"]:
        sidecar = records.read(records.ArtifactSidecar, files.sidecar_path(path))
        reference = fp32.get((sidecar["format"], sidecar["backend"]))
        delta = budget.accuracy_delta(accuracy.get(path), reference)
        verdicts.append(
            {
                "artifact": path,
                "format": sidecar["format"],
                "backend": sidecar["backend"],
                "engine": sidecar.get("engine"),
                "accuracy": accuracy.get(path),
                "fp32_accuracy": reference,
                "accuracy_delta": delta,
                "within_budget": budget.within(delta, allowed),
            }
        )
    if not verdicts:
        raise ValueError(f"{job.wildcards['point']}: no int8 artifact evaluated here to judge")
    before: list[dict[str, Any]] = []
    for path in job.input.get("previous", []):
        previous = records.read(records.PruneSearchStep, path)
        before = [*previous["tried_before"], _tried(previous)]
    # What is left after a verdict does not depend on max_points (not a param of this job).
    plan = search.Search.of({**settings["search"], "max_points": 0})
    amount = float(settings["amount"])
    within = all(entry["within_budget"] for entry in verdicts)
    history = [(entry["amount"], entry["within_budget"]) for entry in before]
    left = search.remaining(plan, [*history, (amount, within)])
    record = {
        "model": job.wildcards["model"],
        "point": job.wildcards["point"],
        "amount": amount,
        "within_budget": within,
        "accuracy_budget": allowed,
        "artifacts": verdicts,
        "tried_before": before,
        "interval": list(left) if left else None,
        "toolchain": job.params.get("toolchain"),
    }
    records.check(records.PruneSearchStep, record, job.output["verdict"])
    files.write_json_atomic(job.output["verdict"], record)
    worst = min(verdicts, key=lambda entry: _number(entry["accuracy_delta"]))
    job.log(
        f"{record['point']}: {'within' if within else 'over'} the {allowed:g}-point budget "
        f"(worst: {worst['format']} {worst['backend']} {_points(worst['accuracy_delta'])}); "
        f"left to try: {_interval(left)}"
    )


@without_torch
def prune_search(job: Job) -> None:
    """Where the search ended: the verdicts in the order tried, the largest amount within the
    budget, and why it stopped."""
    settings = job.params["search"]
    plan = search.Search.of(settings["search"])
    steps = [records.read(records.PruneSearchStep, path) for path in job.input["steps"]]
    history = [(step["amount"], step["within_budget"]) for step in steps]
    reason = search.stopped(plan, history)
    if reason is None:  # the workflow lists every amount up to the end: a bug if not
        raise ValueError(f"the search is not over after {[a for a, _ in history]}")
    chosen = search.best(plan, history)
    record = {
        "model": job.wildcards["model"],
        "method": "channel",
        "low": plan.low,
        "high": plan.high,
        "step": plan.step,
        "max_points": plan.max_points,
        "accuracy_budget": float(settings["accuracy_budget"]),
        "steps": steps,
        "chosen": None if chosen is None else PrunePoint("channel", chosen).label,
        "chosen_amount": chosen,
        "stopped": reason,
        "toolchain": job.params.get("toolchain"),
    }
    records.check(records.PruneSearch, record, job.output["search"])
    files.write_json_atomic(job.output["search"], record)
    job.log(f"tried {[a for a, _ in history]}: chose {record['chosen']}; stopped: {reason}")


def _tried(step: dict[str, Any]) -> dict[str, Any]:
    return {"amount": step["amount"], "within_budget": step["within_budget"]}


def _number(value: Any) -> float:
    return float("-inf") if value is None else float(value)


def _points(delta: float | None) -> str:
    return "no accuracy" if delta is None else f"{delta:+.2f} points"


def _interval(left: tuple[float, float] | None) -> str:
    return "nothing" if left is None else f"{left[0]:g} to {left[1]:g}"
