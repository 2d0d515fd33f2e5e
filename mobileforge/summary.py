"""results/summary.csv: one row per (model, variant, format, backend, device).

Built only from the JSON the jobs wrote (artifact sidecars, evaluations, benchmarks), so it can
be regenerated without touching a model. Comparisons are within the same model, format and
backend (``accuracy_delta``) and also device (``speedup``), against the fp32 row.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

COLUMNS = [
    "model", "variant", "format", "backend", "device", "engine", "params", "size_bytes",
    "compressed_bytes", "prune_method", "prune_amount", "sparsity", "fp32_layers",
    "fp32_layer_names", "accuracy", "accuracy_delta", "max_abs_diff", "latency_ms_p50",
    "latency_ms_p90", "latency_ms_mean", "latency_ms_std", "latency_ms_min",
    "latency_ms_trimmed_mean", "latency_cv", "repeats", "unstable", "load_ms", "peak_rss_mb",
    "threads", "affinity", "temp_c_before", "temp_c_after", "speedup", "best", "optimization",
    "runtime", "note", "artifact",
]  # fmt: skip
#: Columns summarize() derives from the others.
_DERIVED = ("accuracy_delta", "speedup", "best", "unstable")


def build_rows(
    artifacts: list[dict[str, Any]],
    evaluations: dict[str, dict[str, Any]],
    benchmarks: dict[tuple[str, str], dict[str, Any]],
    devices: dict[str, dict[str, Any]],
    failures: dict[tuple[str, str], str] | None = None,
    planned: set[tuple[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Join sidecars, evaluations (by artifact path) and benchmarks (by artifact, device).

    ``failures`` holds the error of each failed benchmark and ``planned`` every benchmark the
    run meant to make (both by artifact, device): a run that ended in errors still gets one
    row per pair, saying which benchmark failed and why, or that it never ran.
    """
    failures = failures or {}
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
            affinity = measured.get("affinity")
            thermal = measured.get("thermal") or {}
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
                    "compressed_bytes": sidecar.get("compressed_bytes"),
                    "prune_method": (sidecar.get("prune") or {}).get("method"),
                    # The amount actually applied (an unstructured point may stop short of the
                    # requested amount to stay within the accuracy budget: see note).
                    "prune_amount": (sidecar.get("prune") or {}).get("amount"),
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
                    "latency_ms_trimmed_mean": latency.get("trimmed_mean"),
                    "latency_cv": latency.get("cv"),
                    "repeats": latency.get("runs"),
                    "load_ms": measured.get("load_ms"),
                    "peak_rss_mb": measured.get("peak_rss_mb"),
                    # What ran: the runtime's own thread count where it reports one (else what
                    # was asked for: speed_benchmark_torch has no thread flag) and the CPUs.
                    "threads": measured.get("threads_applied") or measured.get("threads_requested"),
                    "affinity": _affinity(affinity, bench),
                    "temp_c_before": thermal.get("before_c"),
                    "temp_c_after": thermal.get("after_c"),
                    "optimization": sidecar.get("optimization", ""),
                    "runtime": measured.get("runtime", ""),
                    "note": _note(
                        bench,
                        settings["kind"],
                        sidecar,
                        failures.get((path, device)),
                        planned is not None and (path, device) in planned,
                    ),  # fmt: skip
                    "artifact": path,
                }
            )
    return rows


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
    rows: list[dict[str, Any]], accuracy_budget: float, unstable_cv: float = 0.05
) -> pd.DataFrame:
    """Add accuracy_delta, speedup, best and unstable; order rows and columns predictably.

    ``unstable`` marks a benchmark whose repeats' p50 moved more than ``unstable_cv`` (as a
    coefficient of variation) from run to run; its note says so.
    """
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in _DERIVED])
    # A partial summary may have a column of None only (no evaluation finished): still numbers.
    for column in ("accuracy", "latency_ms_p50"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    cv = pd.to_numeric(frame["latency_cv"], errors="coerce")
    frame["unstable"] = cv > unstable_cv
    for index in frame.index[frame["unstable"]]:
        flag = f"unstable: run-to-run CV {cv[index]:.1%} > {unstable_cv:.1%}"
        frame.loc[index, "note"] = "; ".join(n for n in (frame.loc[index, "note"], flag) if n)
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
    frame["best"] = False
    eligible = frame[
        frame["latency_ms_p50"].notna() & (frame["accuracy_delta"] >= -accuracy_budget)
    ]
    for _, group in eligible.groupby(["model", "device"]):
        frame.loc[group["latency_ms_p50"].astype(float).idxmin(), "best"] = True
    frame = frame.sort_values(["model", "device", "format", "backend", "variant"], kind="stable")
    return frame[COLUMNS].reset_index(drop=True)
