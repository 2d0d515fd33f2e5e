"""results/summary.csv: one row per (model, variant, format, backend, device).

Built only from the JSON the jobs wrote (artifact sidecars, evaluations, benchmarks, paired
comparisons, the host's peak throughput), so it can be regenerated without touching a model.
``accuracy_delta`` is against the fp32 row of the same model, format and backend. Every latency
*ratio* comes from the model's paired comparison on that device (:mod:`mobileforge.bench.compare`),
never from two benchmarks taken apart: ``speedup`` (the fp32 artifact of the same format and
backend over this one) and ``vs_executorch`` (the faster of the plain ``.pte`` fp32 and int8
exports over this one), each with its interval. ``pareto``, ``best`` and ``best_reason`` come
from :mod:`mobileforge.selection`.

Distance from the limit, for host benchmark rows: ``macs`` (one inference, counted on the fused
float model and carried in the sidecar), ``achieved_gmacs = macs / p50``, ``peak_gmacs`` and
``peak_kernel`` (the fastest GEMM kernel of the artifact's precision on that device's CPUs and
threads, :mod:`mobileforge.bench.peak`) and ``roofline_fraction = achieved / peak``.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mobileforge import records, selection
from mobileforge.bench import compare
from mobileforge.bench.stats import benchmark_samples

#: summary.csv's columns, in order: :class:`mobileforge.records.SummaryRow`.
COLUMNS = records.keys(records.SummaryRow)
#: Columns summarize() derives; build_rows() leaves them out.
DERIVED = ("accuracy_delta", "unstable", "achieved_gmacs", "roofline_fraction", "pareto", "best",
           "best_reason")  # fmt: skip
#: The columns build_rows() fills, in order.
BUILT = [column for column in COLUMNS if column not in DERIVED]


def precision(variant: str) -> str | None:
    """The arithmetic an artifact's variant runs in (``int8_pruned-channel-0.5``: int8)."""
    for name in ("int8", "fp32"):
        if variant == name or variant.startswith((f"{name}_", f"{name}-")):
            return name
    return None


def build_rows(
    artifacts: list[dict[str, Any]],
    evaluations: dict[str, dict[str, Any]],
    benchmarks: dict[tuple[str, str], dict[str, Any]],
    devices: dict[str, dict[str, Any]],
    peaks: dict[str, dict[str, Any]] | None = None,
    failures: dict[tuple[str, str], str] | None = None,
    planned: set[tuple[str, str]] | None = None,
    comparisons: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Join sidecars, evaluations (by artifact path), benchmarks (by artifact, device), the
    peak throughput of each host device (by device name) and the paired comparisons (by model,
    device).

    ``failures`` holds the error of each failed benchmark and ``planned`` every benchmark the
    run meant to make (both by artifact, device): a run that ended in errors still gets one
    row per pair, saying which benchmark failed and why, or that it never ran.
    """
    peaks = peaks or {}
    failures = failures or {}
    comparisons = comparisons or {}
    rows = []
    for sidecar in artifacts:
        path = sidecar["artifact"]
        for device, settings in devices.items():
            if sidecar.get("engine") not in (None, settings["engine"]):
                continue  # an int8 artifact for another kernel library than this device runs
            bench = benchmarks.get((path, device))
            peak = peaks.get(device, {}).get("peak", {}).get(precision(sidecar["variant"]) or "")
            if bench is None:
                peak = None  # a roofline is drawn for measured rows only
            note = _note(bench, settings["kind"], sidecar, failures.get((path, device)),
                         planned is not None and (path, device) in planned)  # fmt: skip
            values = {
                **_artifact_columns(sidecar, evaluations.get(path, {})),
                **_measured_columns(bench),
                **paired_ratios(comparisons.get((sidecar["model"], device)), path),
                "device": device,
                "peak_gmacs": peak["gmacs"] if peak else None,
                "peak_kernel": peak["kernel"] if peak else "",
                "note": note,
            }
            rows.append(_declared(values))
    return rows


def _artifact_columns(sidecar: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    """The columns an artifact has on every device: what it is and how accurate."""
    prune = sidecar.get("prune") or {}
    return {
        "model": sidecar["model"],
        "variant": sidecar["variant"],
        "format": sidecar["format"],
        "backend": sidecar["backend"],
        "engine": sidecar.get("engine") or "",
        "params": sidecar.get("params"),
        "size_bytes": sidecar["size_bytes"],
        "compressed_bytes": sidecar.get("compressed_bytes"),
        "prune_method": prune.get("method"),
        # The amount actually applied (an unstructured point may stop short of the requested
        # amount to stay within the accuracy budget: see note).
        "prune_amount": prune.get("amount"),
        # Channel points: how many epochs the recovery fine-tune used (it stops within budget).
        "finetune_epochs": prune.get("finetune_epochs"),
        "sparsity": sidecar.get("sparsity"),
        # Layers the int8 accuracy budget kept in fp32: how many, which.
        "fp32_layers": _count(sidecar.get("fp32_layers")),
        "fp32_layer_names": _names(sidecar.get("fp32_layers")),
        "accuracy": evaluation.get("accuracy"),
        "max_abs_diff": evaluation.get("max_abs_diff"),
        "macs": sidecar.get("macs"),
        "optimization": sidecar.get("optimization", ""),
        "built_with": built_with(sidecar),
        "artifact": sidecar["artifact"],
    }


def _measured_columns(bench: dict[str, Any] | None) -> dict[str, Any]:
    """The columns of one benchmark (empty without one): latency with its interval, spread,
    load time, memory, what ran and where."""
    measured = bench or {}
    latency = measured.get("latency_ms", {})
    thermal = measured.get("thermal") or {}
    # The machine that ran the benchmark (a host device on a cluster is whichever compute node
    # the job landed on).
    host = measured.get("host") or {}
    ci_low, ci_high = selection.median_interval(
        benchmark_samples(bench) if bench is not None else []
    )
    return {
        "latency_ms_p50": latency.get("p50"),
        "latency_ms_p90": latency.get("p90"),
        "latency_ms_mean": latency.get("mean"),
        "latency_ms_std": latency.get("std"),
        "latency_ms_min": latency.get("min"),
        "latency_ms_trimmed_mean": latency.get("trimmed_mean"),
        "latency_ms_ci_low": ci_low,
        "latency_ms_ci_high": ci_high,
        # Run-to-run spread, where a benchmark repeated its process.
        "latency_cv": latency.get("cv"),
        "repeats": latency.get("runs"),
        "load_ms": measured.get("load_ms"),
        "peak_rss_mb": measured.get("peak_rss_mb"),
        # What ran: the runtime's own thread count where it reports one (else what was asked
        # for: speed_benchmark_torch has no thread flag) and the CPUs.
        "threads": measured.get("threads_applied") or measured.get("threads_requested"),
        "affinity": _affinity(measured.get("affinity"), bench),
        "node": host.get("node"),
        "cpu_model": host.get("cpu_model"),
        "temp_c_before": thermal.get("before_c"),
        "temp_c_after": thermal.get("after_c"),
        "runtime": measured.get("runtime", ""),
    }


def _declared(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as a row, its columns in order, if it has exactly the columns build_rows
    fills (a key missing or undeclared would leave a column empty or be dropped without a
    word)."""
    missing = sorted(set(BUILT) - values.keys())
    undeclared = sorted(values.keys() - set(BUILT))
    if missing or undeclared:
        raise records.RecordError(
            f"summary row of {values.get('artifact')} on {values.get('device')}: columns differ "
            f"from {records.HOME} SummaryRow (missing {missing}, undeclared {undeclared})"
        )
    return {column: values[column] for column in BUILT}


#: The ratio columns a comparison fills (empty where the artifact was not in one).
RATIO_COLUMNS = ("speedup", "speedup_low", "speedup_high", "vs_executorch", "vs_executorch_low",
                 "vs_executorch_high")  # fmt: skip


def paired_ratios(record: dict[str, Any] | None, path: str) -> dict[str, Any]:
    """``speedup`` and ``vs_executorch`` of ``path`` (with intervals) from its model's paired
    comparison on the row's device, and ``compared`` (whether it was a candidate there).

    ``speedup``: latency of the fp32 artifact of the same format and backend over this one's;
    ``vs_executorch``: latency of the faster (by median ratio) of the plain XNNPACK ``.pte`` fp32
    and int8 programs over this one's. Both are medians over rounds of per-round ratios.
    """
    empty: dict[str, Any] = {column: None for column in RATIO_COLUMNS}
    if record is None:
        return {**empty, "compared": False}
    rows = record["artifacts"]
    index = {row["path"]: i for i, row in enumerate(rows)}
    if path not in index:
        return {**empty, "compared": False}
    me = index[path]
    found = {**empty, "compared": True}
    mine = rows[me]
    fp32 = [i for i, row in enumerate(rows) if row["variant"] == "fp32"
            and (row["format"], row["backend"]) == (mine["format"], mine["backend"])]  # fmt: skip
    if fp32:
        found.update(_ratio_columns("speedup", record, fp32[0], me))
    plain = {row["variant"]: i for i, row in enumerate(rows)  # ExecuTorch's CPU delegate
             if (row["format"], row["backend"]) == ("pte", "xnnpack")
             and row["variant"] in ("fp32", "int8")}  # fmt: skip
    if plain:
        faster = plain.get("fp32", plain.get("int8"))
        if len(plain) == 2 and compare.pair(record, plain["int8"], plain["fp32"])["ratio"] < 1:
            faster = plain["int8"]
        found.update(_ratio_columns("vs_executorch", record, faster, me))
    return found


def _ratio_columns(name: str, record: dict[str, Any], over: int, me: int) -> dict[str, float]:
    """``name``, ``name_low``, ``name_high``: latency of artifact ``over`` over artifact ``me``."""
    if over == me:
        return {name: 1.0, f"{name}_low": 1.0, f"{name}_high": 1.0}
    entry = compare.pair(record, over, me)
    return {name: entry["ratio"], f"{name}_low": entry["ratio_low"],
            f"{name}_high": entry["ratio_high"]}  # fmt: skip


def built_with(sidecar: dict[str, Any]) -> str:
    """The packages (and versions) the artifact was built with, e.g. ``torch==2.13.0+cpu``.

    From the toolchain its export job recorded (mobileforge.fingerprint), so rows built before
    and after an upgrade can be told apart; older sidecars only name torch.
    """
    packages = (sidecar.get("toolchain") or {}).get("packages")
    if not packages:
        version = sidecar.get("torch_version")
        return f"torch=={version}" if version else ""
    return " ".join(f"{name}=={version}" for name, version in sorted(packages.items()))


def _count(layers: list[str] | None) -> int | None:
    return None if layers is None else len(layers)


def _names(layers: list[str] | None) -> str | None:
    return None if layers is None else " ".join(layers)


def _affinity(cpus: list[int] | None, bench: dict[str, Any] | None) -> str:
    if bench is None:
        return ""
    return ",".join(str(c) for c in cpus) if cpus else "unpinned"


def _note(
    bench: dict[str, Any] | None,
    kind: str,
    sidecar: dict[str, Any],
    failure: str | None,
    planned: bool,
) -> str:
    notes = []
    for key, what in (("int8_budget", "int8 accuracy budget"), ("prune_budget", "pruning")):
        decision = sidecar.get(key)
        if decision is not None and not decision["met"]:
            notes.append(f"{what}: {decision['reason']}")
    if bench is None:
        if failure is not None:
            notes.append(f"benchmark failed: {failure}")
        elif planned:
            notes.append("not benchmarked: the run ended before this benchmark (see its log)")
        else:
            notes.append(f"not benchmarked: {kind} cannot run it")
    else:
        # e.g. other processes took CPU during the timed loop: the latency is suspect.
        notes += bench.get("warnings") or []
    return "; ".join(notes)


def summarize(
    rows: list[dict[str, Any]],
    accuracy_budget: float,
    unstable_cv: float = 0.05,
    comparisons: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Add accuracy_delta, unstable, the roofline, pareto and best; order rows and columns
    predictably.

    ``unstable`` marks a benchmark whose repeats' p50 moved more than ``unstable_cv`` (as a
    coefficient of variation) from run to run; its note says so. ``best`` is decided from the
    ``comparisons`` (:func:`mobileforge.selection.choose_best`); a comparison whose A/A control
    failed decides nothing, and its rows' note says so.
    """
    comparisons = comparisons or {}
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in DERIVED])
    # A partial summary may have a column of None only (no evaluation finished): still numbers.
    for column in ("accuracy", "latency_ms_p50", *RATIO_COLUMNS):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    cv = pd.to_numeric(frame["latency_cv"], errors="coerce")
    frame["unstable"] = cv > unstable_cv
    for index in frame.index[frame["unstable"]]:
        flag = f"unstable: run-to-run CV {cv[index]:.1%} > {unstable_cv:.1%}"
        frame.loc[index, "note"] = "; ".join(n for n in (frame.loc[index, "note"], flag) if n)
    for (model, device), record in comparisons.items():
        if record["reliable"]:
            continue
        flag = f"paired comparison unreliable, nothing decided: {record['unreliable_reason']}"
        rows_of = frame.index[(frame["model"] == model) & (frame["device"] == device)]
        for index in rows_of:
            frame.loc[index, "note"] = "; ".join(n for n in (frame.loc[index, "note"], flag) if n)
    fp32 = frame[frame["variant"] == "fp32"]
    accuracy_ref = fp32.drop_duplicates(["model", "format", "backend"]).set_index(
        ["model", "format", "backend"]
    )["accuracy"]
    frame["accuracy_delta"] = [
        acc - accuracy_ref.get((m, f, b), float("nan"))
        for acc, m, f, b in zip(
            frame["accuracy"], frame["model"], frame["format"], frame["backend"], strict=True
        )
    ]
    # MACs per second in G: macs / (p50 ms / 1e3) / 1e9.
    frame["achieved_gmacs"] = [
        macs / p50 / 1e6 if _finite(macs) and _finite(p50) and p50 > 0 else math.nan
        for macs, p50 in zip(frame["macs"], frame["latency_ms_p50"], strict=True)
    ]
    frame["roofline_fraction"] = [
        achieved / peak if _finite(achieved) and _finite(peak) and peak > 0 else math.nan
        for achieved, peak in zip(frame["achieved_gmacs"], frame["peak_gmacs"], strict=True)
    ]
    frame["pareto"] = selection.pareto_front(frame)
    frame["best"], frame["best_reason"] = selection.choose_best(frame, comparisons, accuracy_budget)
    frame = frame.sort_values(["model", "device", "format", "backend", "variant"], kind="stable")
    return frame[COLUMNS].reset_index(drop=True)


def mark_searches(frame: pd.DataFrame, searches: list[dict[str, Any]]) -> pd.DataFrame:
    """``frame`` with the note of each row of an amount a prune search tried (``searches``:
    :class:`mobileforge.records.PruneSearch`) saying its verdict and whether the search chose
    it; summary.md has the whole search in a section of its own."""
    frame = frame.copy()
    for search in searches:
        steps = search["steps"]
        for number, step in enumerate(steps, start=1):
            verdict = "within the budget" if step["within_budget"] else "over the budget"
            flag = f"prune search: amount {number} of {len(steps)} tried, {verdict}"
            if step["point"] == search["chosen"]:
                flag += ", the search's answer"
            variant = f"int8_pruned-{step['point']}"
            rows = frame.index[(frame["model"] == search["model"]) & (frame["variant"] == variant)]
            for index in rows:
                note = frame.loc[index, "note"]
                frame.loc[index, "note"] = "; ".join(n for n in (note, flag) if n)
    return frame


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
