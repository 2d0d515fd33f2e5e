"""results/summary.csv: one row per (model, variant, format, backend, device).

Built only from the JSON the jobs wrote (artifact sidecars, evaluations, benchmarks, the host's
peak throughput), so it can be regenerated without touching a model. Comparisons are within the
same model, format and backend (``accuracy_delta``) and also device (``speedup``), against the
fp32 row. ``pareto``, ``best`` and ``best_reason`` come from :mod:`mobileforge.selection`.

Distance from the limit, for host benchmark rows: ``macs`` (one inference, counted on the fused
float model and carried in the sidecar), ``achieved_gmacs = macs / p50``, ``peak_gmacs`` and
``peak_kernel`` (the fastest GEMM kernel of the artifact's precision on that device's CPUs and
threads, :mod:`mobileforge.bench.peak`) and ``roofline_fraction = achieved / peak``.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mobileforge import selection

COLUMNS = [
    "model", "variant", "format", "backend", "device", "engine", "params", "size_bytes",
    "sparsity", "fp32_layers", "fp32_layer_names", "accuracy", "accuracy_delta", "max_abs_diff",
    "latency_ms_p50", "latency_ms_p90", "latency_ms_mean", "latency_ms_std", "latency_ms_min",
    "latency_ms_ci_low", "latency_ms_ci_high", "latency_run_cv", "load_ms", "peak_rss_mb",
    "threads", "speedup", "macs", "achieved_gmacs", "peak_gmacs", "peak_kernel",
    "roofline_fraction", "pareto", "best", "best_reason", "optimization", "runtime", "note",
    "artifact",
]  # fmt: skip
#: Columns summarize() derives; build_rows() leaves them out.
DERIVED = ("accuracy_delta", "speedup", "achieved_gmacs", "roofline_fraction", "pareto", "best",
           "best_reason")  # fmt: skip


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
) -> list[dict[str, Any]]:
    """Join sidecars, evaluations (by artifact path), benchmarks (by artifact, device) and the
    peak throughput of each host device (by device name)."""
    peaks = peaks or {}
    rows = []
    for sidecar in artifacts:
        path = sidecar["artifact"]
        evaluation = evaluations.get(path, {})
        for device, settings in devices.items():
            if sidecar.get("engine") not in (None, settings["engine"]):
                continue  # an int8 artifact for another kernel library than this device runs
            bench = benchmarks.get((path, device))
            measured = bench or {}
            latency = measured.get("latency_ms", {})
            ci_low, ci_high = selection.median_interval(measured.get("samples_ms") or [])
            peak = peaks.get(device, {}).get("peak", {}).get(precision(sidecar["variant"]) or "")
            if bench is None:
                peak = None  # a roofline is drawn for measured rows only
            rows.append(
                {
                    "model": sidecar["model"],
                    "variant": sidecar["variant"],
                    "format": sidecar["format"],
                    "backend": sidecar["backend"],
                    "device": device,
                    "engine": sidecar.get("engine") or "",
                    "params": sidecar.get("params"),
                    "size_bytes": sidecar["size_bytes"],
                    "sparsity": sidecar.get("sparsity"),
                    # Layers the int8 accuracy budget kept in fp32: how many, which.
                    "fp32_layers": _count(sidecar.get("fp32_layers")),
                    "fp32_layer_names": _names(sidecar.get("fp32_layers")),
                    "accuracy": evaluation.get("accuracy"),
                    "max_abs_diff": evaluation.get("max_abs_diff"),
                    "latency_ms_p50": latency.get("p50"),
                    "latency_ms_p90": latency.get("p90"),
                    "latency_ms_mean": latency.get("mean"),
                    "latency_ms_std": latency.get("std"),
                    "latency_ms_min": latency.get("min"),
                    "latency_ms_ci_low": ci_low,
                    "latency_ms_ci_high": ci_high,
                    # Run-to-run spread, where a benchmark repeated its process (issue 8).
                    "latency_run_cv": latency.get("cv"),
                    "load_ms": measured.get("load_ms"),
                    "peak_rss_mb": measured.get("peak_rss_mb"),
                    "threads": measured.get("threads_applied"),
                    "macs": sidecar.get("macs"),
                    "peak_gmacs": peak["gmacs"] if peak else None,
                    "peak_kernel": peak["kernel"] if peak else "",
                    "optimization": sidecar.get("optimization", ""),
                    "runtime": measured.get("runtime", ""),
                    "note": _note(bench, settings["kind"], sidecar.get("int8_budget")),
                    "artifact": path,
                }
            )
    return rows


def _count(layers: list[str] | None) -> int | None:
    return None if layers is None else len(layers)


def _names(layers: list[str] | None) -> str | None:
    return None if layers is None else " ".join(layers)


def _note(bench: dict[str, Any] | None, kind: str, budget: dict[str, Any] | None) -> str:
    notes = []
    if budget is not None and not budget["met"]:
        notes.append(f"int8 accuracy budget not met: {budget['reason']}")
    if bench is None:
        notes.append(f"not benchmarked: {kind} cannot run it")
    else:
        # e.g. other processes took CPU during the timed loop: the latency is suspect.
        notes += bench.get("warnings") or []
    return "; ".join(notes)


def summarize(rows: list[dict[str, Any]], accuracy_budget: float) -> pd.DataFrame:
    """Add accuracy_delta, speedup, the roofline, pareto and best; order rows and columns."""
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in DERIVED])
    fp32 = frame[frame["variant"] == "fp32"]
    accuracy_ref = fp32.drop_duplicates(["model", "format", "backend"]).set_index(
        ["model", "format", "backend"]
    )["accuracy"]
    latency_ref = fp32.set_index(["model", "format", "backend", "device"])["latency_ms_p50"]

    def lookup(series: pd.Series, key: tuple) -> float:
        return series.get(key, float("nan"))

    frame["accuracy_delta"] = [
        acc - lookup(accuracy_ref, (m, f, b))
        for acc, m, f, b in zip(
            frame["accuracy"], frame["model"], frame["format"], frame["backend"], strict=True
        )
    ]
    frame["speedup"] = [
        lookup(latency_ref, (m, f, b, d)) / p50
        for p50, m, f, b, d in zip(
            frame["latency_ms_p50"],
            frame["model"],
            frame["format"],
            frame["backend"],
            frame["device"],
            strict=True,
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
    frame["best"], frame["best_reason"] = selection.choose_best(frame, accuracy_budget)
    frame = frame.sort_values(["model", "device", "format", "backend", "variant"], kind="stable")
    return frame[COLUMNS].reset_index(drop=True)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
