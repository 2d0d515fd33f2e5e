"""Plots of results/summary.csv for people: where each artifact sits on latency vs accuracy, and
what each variant costs in bytes. Wrapped by Snakemake's ``report()`` so that
``snakemake --report report.html`` shows them with the summary table.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # no display on build machines

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

MARKERS = {"fp32": "o", "int8": "s", "int8_pruned": "^"}


def plot_latency_accuracy(summary: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """One panel per device: p50 latency (log x) against top-1, one colour per model."""
    measured = summary.dropna(subset=["latency_ms_p50", "accuracy"])
    devices = sorted(measured["device"].unique()) or ["(none)"]
    fig, axes = plt.subplots(1, len(devices), figsize=(6 * len(devices), 4.5), squeeze=False)
    for axis, device in zip(axes[0], devices, strict=True):
        rows = measured[measured["device"] == device]
        for (model, variant, fmt), group in rows.groupby(["model", "variant", "format"]):
            axis.scatter(
                group["latency_ms_p50"],
                group["accuracy"],
                marker=MARKERS.get(variant, "x"),
                facecolors="none" if fmt == "pte" else None,
                label=f"{model} {variant} .{fmt}",
                s=60,
            )
        best = rows[rows["best"].astype(bool)]
        axis.scatter(best["latency_ms_p50"], best["accuracy"], marker="*", s=220, c="gold",
                     edgecolors="black", zorder=3, label="best")  # fmt: skip
        axis.set_xscale("log")
        axis.set_xlabel("p50 latency (ms, log scale)")
        axis.set_ylabel("top-1 accuracy (%)")
        axis.set_title(f"device: {device}")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sizes(summary: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Artifact size per model, one bar per (format, backend, variant, engine)."""
    artifacts = summary.drop_duplicates("artifact").copy()
    artifacts["label"] = (
        "." + artifacts["format"] + " " + artifacts["backend"] + " " + artifacts["variant"]
        + artifacts["engine"].fillna("").map(lambda e: f" ({e})" if e else "")
    )  # fmt: skip
    table = artifacts.pivot_table(index="model", columns="label", values="size_bytes") / 1e6
    fig, axis = plt.subplots(figsize=(max(6, 1.5 * len(table) + 4), 4.5))
    table.plot.bar(ax=axis, rot=0)
    axis.set_ylabel("artifact size (MB)")
    axis.set_title("artifact size")
    axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
