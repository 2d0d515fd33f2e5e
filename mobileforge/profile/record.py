"""A :class:`mobileforge.records.Profile` from a raw profile and the benchmark it is checked
against, or the record of a device that cannot be profiled."""

from __future__ import annotations

import statistics
from typing import Any

from mobileforge import records
from mobileforge.profile.agreement import agreement
from mobileforge.profile.layers import attribute, layers

#: The median run's sum of layers over the sum of the layers' medians above which the runs were
#: disturbed (on a quiet machine the two agree within a few per cent).
DISTURBED = 1.1

#: Why a phone has no profile of an artifact of each format whatever its runner (a ``.pte``'s
#: depends on its executor_runner: :func:`mobileforge.bench.android.etdump.etdump_support`).
PHONE_UNAVAILABLE = {
    "ptl": "speed_benchmark_torch, the .ptl runner on phones, reports no per-operator times "
    "(it has no profiler flag)",
}

#: How each format is profiled, when no profile was taken.
METHODS = {"pte": "etdump", "ptl": "lite_profiler"}


def _identity(sidecar: dict[str, Any], artifact: str, device: str, kind: str) -> dict[str, Any]:
    return {
        "artifact": artifact,
        "model": sidecar["model"],
        "format": sidecar["format"],
        "variant": sidecar["variant"],
        "device": device,
        "device_kind": kind,
    }


def from_raw(
    raw: dict[str, Any],
    sidecar: dict[str, Any],
    artifact: str,
    device: str,
    device_kind: str,
    warmup: int,
    benchmark_p50_ms: float | None,
    macs: dict[str, int] | None = None,
) -> records.Profile:
    """The profile record of ``raw`` (:func:`mobileforge.profile.runner.profile`'s shape);
    ``macs``: MACs per module of the float model the artifact was built from
    (:func:`mobileforge.macs.module_macs`), given to the layers whose module is known."""
    rows, layers_ms, run_sum_ms = layers(raw["runs"])
    modules = raw.get("modules") or {}
    attributed = attribute(rows, modules, macs)
    end_to_end = raw.get("end_to_end_ms") or []
    end_to_end_ms = statistics.median(end_to_end) if end_to_end else None
    unprofiled = raw.get("unprofiled_ms")
    overhead = (
        end_to_end_ms - statistics.median(unprofiled)
        if unprofiled and end_to_end_ms is not None
        else None
    )
    check = agreement(layers_ms, end_to_end_ms, benchmark_p50_ms, overhead)
    warnings = []
    if run_sum_ms > DISTURBED * layers_ms:
        warnings.append(
            f"runs were disturbed: the median run's layers add up to {run_sum_ms:.3f} ms, their "
            f"medians to {layers_ms:.3f} ms (another process took the CPU inside operators; "
            "the end-to-end time holds that too)"
        )
    warnings += _module_warnings(raw, rows, modules, macs, attributed)
    return {
        **_identity(sidecar, artifact, device, device_kind),  # type: ignore[typeddict-item]
        "method": raw["method"],
        "unavailable": None,
        "runs": len(raw["runs"]),
        "warmup": warmup,
        "threads": raw.get("threads"),
        "layers": rows,
        "layers_ms": layers_ms,
        "end_to_end_ms": end_to_end_ms,
        "benchmark_p50_ms": benchmark_p50_ms,
        "profiler_overhead_ms": overhead,
        **check,
        "warnings": warnings,
        "torch_version": raw.get("torch_version"),
        "executorch_version": raw.get("executorch_version"),
        "toolchain": None,
    }


def _module_warnings(
    raw: dict[str, Any],
    rows: list[records.ProfiledLayer],
    modules: dict[str, str | None],
    macs: dict[str, int] | None,
    attributed: int,
) -> list[str]:
    """What the record says about where ``module`` and ``macs`` come from, and where not."""
    if raw["method"] == "etdump":
        return ["module is None: XNNPACK's operators carry no debug handle back to the model's "
                "modules, and their order was not matched to the program's nodes"]  # fmt: skip
    notes = []
    if raw.get("module_error"):
        notes.append(f"module is None: {raw['module_error']}")
    elif modules:
        unknown = sum(1 for row in rows if row["name"] not in modules)
        outside = sum(1 for row in rows if row["name"] in modules and not row["module"])
        notes.append(
            "module: profiled a debug copy re-saved from the artifact's own TorchScript "
            "(same operator instructions in forward, same operators run in the same order); "
            f"{len(rows) - unknown} of {len(rows)} layers mapped by occurrence "
            f"({outside} of them called outside any module)"
            + (f", {unknown} not (an operator called in a loop or a branch)" if unknown else "")
        )
    if macs is None:
        notes.append("macs is None: no float model given to count them")
    elif modules:
        total = macs.get("", 0)
        notes.append(
            f"macs: {attributed} of the float model's {total} MACs on the convolutions and "
            "matrix products whose module is known"
        )
    return notes


def unavailable(
    sidecar: dict[str, Any], artifact: str, device: str, device_kind: str, why: str
) -> records.Profile:
    """The record of a device that cannot profile ``artifact``: no layers, ``why`` said."""
    return {
        **_identity(sidecar, artifact, device, device_kind),  # type: ignore[typeddict-item]
        "method": METHODS[sidecar["format"]],
        "unavailable": why,
        "runs": 0,
        "warmup": 0,
        "threads": None,
        "layers": [],
        "layers_ms": None,
        "end_to_end_ms": None,
        "outside_ms": None,
        "profiler_overhead_ms": None,
        "benchmark_p50_ms": None,
        "coverage": None,
        "agrees": None,
        "agreement": f"no profile: {why}",
        "warnings": [],
        "torch_version": None,
        "executorch_version": None,
        "toolchain": None,
    }
