"""The workflow's stages: one function per rule, reading the job's inputs, calling the library
and writing its outputs.

Each stage writes one artifact atomically plus a JSON sidecar (sha256, size, the settings used,
torch version, which path produced it). Settings arrive as Snakemake ``params`` so that editing
one model's or one device's config reruns exactly the jobs that depend on it.

One module per stage family; :data:`STAGES` says where each stage lives and :data:`RULES` which
stage each rule runs. The rules' one script (``scripts/stage.py``) looks its stage up here, and
:mod:`mobileforge.fingerprint` reads :data:`STAGES` (with ``ast``, importing nothing) to find the
code each stage runs.

torch (about 1.3 s to import) is imported inside the stages that use it: the benchmark and
summary jobs, which run many times and need none of it in their own process, skip that cost.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

#: Stage (what a rule's ``toolchain("<stage>")`` names) -> "<module of this package>:<function>".
STAGES: dict[str, str] = {
    "dataset": "data:dataset",
    "train": "train:train",
    "fuse": "train:fuse",
    "sensitivity": "quantize:sensitivity",
    "quantize": "quantize:quantize",
    "quantize_pte": "quantize:quantize_pte",
    "prune": "prune:prune",
    "prune_channel": "prune:prune_channel",
    "prune_search_step": "search:prune_search_step",
    "prune_search": "search:prune_search",
    "export_ptl": "export:export_ptl",
    "export_pte": "export:export_pte",
    "evaluate": "evaluate:evaluate",
    "benchmark": "bench:benchmark",
    "compare": "bench:compare",
    "peak_programs": "bench:peak_programs",
    "peak": "bench:peak",
    "profile": "profile:profile",
    "summary": "report:summary",
    "plots": "report:plots",
    "plot_sensitivity": "report:plot_sensitivity",
    "plot_recovery": "report:plot_recovery",
    "profile_page": "report:profile_page",
}

#: Workflow rule -> the stage it runs (rules of one stage differ in their inputs, not in code).
RULES: dict[str, str] = {
    "dataset": "dataset",
    "train": "train",
    "fuse": "fuse",
    "sensitivity": "sensitivity",
    "quantize": "quantize",
    "quantize_pte": "quantize_pte",
    "plot_sensitivity": "plot_sensitivity",
    "plot_recovery": "plot_recovery",
    "prune": "prune",
    "prune_channel": "prune_channel",
    "prune_search_step": "prune_search_step",
    "prune_search": "prune_search",
    "export_ptl_fp32": "export_ptl",
    "export_ptl_int8": "export_ptl",
    "export_pte": "export_pte",
    "evaluate": "evaluate",
    "benchmark_host": "benchmark",
    "benchmark_adb": "benchmark",
    "compare": "compare",
    "compare_adb": "compare",
    "peak_programs": "peak_programs",
    "peak": "peak",
    "profile_host": "profile",
    "profile_adb": "profile",
    "summary": "summary",
    "plots": "plots",
    "profile_page": "profile_page",
}


def stage_function(stage: str) -> Callable[[Any], None]:
    """The function of ``stage`` (a key of :data:`STAGES`), imported."""
    if stage not in STAGES:
        raise ValueError(f"mobileforge.stages has no stage {stage!r}")
    module, _, name = STAGES[stage].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def for_rule(rule: str) -> Callable[[Any], None]:
    """The stage function the workflow rule ``rule`` runs."""
    # Looked up before importing: a KeyError raised while a stage module imports is its own.
    if rule not in RULES:
        raise ValueError(f"rule {rule!r} runs no stage: add it to mobileforge.stages.RULES")
    return stage_function(RULES[rule])
