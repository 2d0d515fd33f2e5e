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
    "sparsity", "accuracy", "accuracy_delta", "max_abs_diff", "latency_ms_p50", "latency_ms_p90",
    "latency_ms_mean", "latency_ms_std", "latency_ms_min", "load_ms", "peak_rss_mb", "threads",
    "node", "cpu_model", "speedup", "best", "optimization", "runtime", "built_with", "note",
    "artifact",
]  # fmt: skip


def build_rows(
    artifacts: list[dict[str, Any]],
    evaluations: dict[str, dict[str, Any]],
    benchmarks: dict[tuple[str, str], dict[str, Any]],
    devices: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """Join sidecars, evaluations (by artifact path) and benchmarks (by artifact, device)."""
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
            # The machine that ran the benchmark (a host device on a cluster is whichever
            # compute node the job landed on).
            host = measured.get("host") or {}
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
                    "accuracy": evaluation.get("accuracy"),
                    "max_abs_diff": evaluation.get("max_abs_diff"),
                    "latency_ms_p50": latency.get("p50"),
                    "latency_ms_p90": latency.get("p90"),
                    "latency_ms_mean": latency.get("mean"),
                    "latency_ms_std": latency.get("std"),
                    "latency_ms_min": latency.get("min"),
                    "load_ms": measured.get("load_ms"),
                    "peak_rss_mb": measured.get("peak_rss_mb"),
                    "threads": measured.get("threads_applied"),
                    "node": host.get("node"),
                    "cpu_model": host.get("cpu_model"),
                    "optimization": sidecar.get("optimization", ""),
                    "runtime": measured.get("runtime", ""),
                    "built_with": built_with(sidecar),
                    "note": _note(bench, settings["kind"]),
                    "artifact": path,
                }
            )
    return rows


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


def _note(bench: dict[str, Any] | None, kind: str) -> str:
    if bench is None:
        return f"not benchmarked: {kind} cannot run it"
    # e.g. other processes took CPU during the timed loop: the latency is suspect.
    return "; ".join(bench.get("warnings") or [])


def summarize(rows: list[dict[str, Any]], accuracy_budget: float) -> pd.DataFrame:
    """Add accuracy_delta, speedup and best; order rows and columns predictably."""
    frame = pd.DataFrame(
        rows, columns=[c for c in COLUMNS if c not in ("accuracy_delta", "speedup", "best")]
    )
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
