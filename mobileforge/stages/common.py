"""What the stage modules share: the versions every output records, the calibration split
and fp32 logits the int8 and pruning budgets measure against, and the fields of an artifact's
sidecar."""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any

from mobileforge import files
from mobileforge.job import Job

if TYPE_CHECKING:  # pragma: no cover - typing only
    from mobileforge.quantize.budget import Control


def versions(job: Job) -> dict[str, Any]:
    """What the output was made with: torch and Python, and the job's ``toolchain`` param (the
    fingerprint of the code it ran and its packages' versions, mobileforge.fingerprint)."""
    import torch

    return {
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "toolchain": job.params.get("toolchain"),
    }


def listed(job: Job, key: str) -> list[str]:
    """The paths of a listing input, with those only ``quantize.mode: auto`` decided on or a
    prune search's verdicts led to (``auto_<key>``, listed apart in the rules:
    rules/common.smk)."""
    return [*job.input[key], *job.input.get(f"auto_{key}", [])]


def ranking(job: Job) -> list[str]:
    """Layers most damaging first, from the sensitivity input (absent without a budget)."""
    path = job.input.get("sensitivity")
    return [layer["layer"] for layer in files.read_json(path)["layers"]] if path else []


def control(job: Job, fused: Any) -> Control:
    """The calibration split and the fp32 logits on it: what the budgets measure against
    (a :class:`mobileforge.quantize.budget.Control`)."""
    from mobileforge.data import load_dataset
    from mobileforge.quantize.budget import Control

    data = load_dataset(job.input["data"])
    return Control.of(fused, data["calib_x"], data.get("calib_y"))


def budget_summary(budget: dict[str, Any]) -> dict[str, Any]:
    """What an artifact's sidecar keeps of its int8 budget decision (the stage has the steps)."""
    return {"met": budget["budget_met"], "reason": budget["reason"], "loss": budget["loss"]}


def unstructured_within_budget(job: Job, layers: Any, fused: Any) -> tuple[Any, dict[str, Any]]:
    """Per-layer l1 amounts by sensitivity, at the largest overall amount within the budget
    (:func:`mobileforge.prune.allocation.prune_within_budget`)."""
    from mobileforge.prune.allocation import prune_within_budget

    settings = job.params["prune"]
    return prune_within_budget(
        layers, control(job, fused), settings["amount"], settings["accuracy_budget"], job.log
    )


def prune_summary(record: dict[str, Any]) -> dict[str, Any]:
    """What an artifact's sidecar keeps of its pruning decision."""
    return {"met": record["within_budget"], "reason": record["reason"]}


def _int8_recipe(recipe: dict[str, Any] | None, decision: Any) -> dict[str, Any]:
    """An int8 artifact's recipe: static or dynamic, and which layers are dynamic."""
    if recipe is None:
        return {}
    dynamic = bool(recipe.get("dynamic"))
    return {
        "quantize_mode": "dynamic" if dynamic else "static",
        "dynamic_layers": decision.get("dynamic_layers", []) if dynamic else [],
    }


def artifact_info(
    job: Job,
    meta: dict[str, Any],
    fmt: str,
    variant: str,
    backend: str,
    decision: Any = None,
) -> dict[str, Any]:
    """The sidecar fields every artifact has; an int8 artifact's recipe and budget decision come
    from its stage meta (FX) or from ``decision``, the ``.pte`` recipe record."""
    decision = decision or meta
    recipe = decision.get("recipe")
    budget = decision.get("int8_budget") or (
        budget_summary(decision["budget"]) if "budget" in decision else None
    )
    return {
        "model": meta["model"],
        "format": fmt,
        "variant": variant,
        "backend": backend,
        "engine": meta.get("engine") if fmt == "ptl" else None,
        "arch": meta["arch"],
        "params": meta["params"],
        "macs": meta.get("macs"),
        "input_shape": meta["input_shape"],
        "sparsity": meta.get("sparsity"),
        "fp32_layers": None if recipe is None else recipe["fp32_layers"],
        "int8_budget": budget,
        **_int8_recipe(recipe, decision),
        # l1 points: from the int8_pruned stage; channel points: from the pruned fp32 stage.
        "prune": meta.get("prune") or meta.get("pruned"),
        "prune_budget": meta.get("prune_budget"),
        **versions(job),
    }
