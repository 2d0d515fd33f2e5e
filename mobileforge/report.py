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


def _decision_key(record: dict) -> tuple[str, str]:
    """(format, quantizer) of an int8 decision: an FX stage sidecar or a .pte recipe."""
    if record.get("stage") == "int8_recipe":
        return "pte", record["backend"]
    return "ptl", record["engine"]


def plot_sensitivity(
    sensitivities: list[dict], decisions: list[dict], path: str | os.PathLike[str], top: int = 20
) -> None:
    """One panel per quantizer: the ``top`` most damaging layers, those kept in fp32 in red.

    Damage is drawn as the noise the layer alone adds to the logits, in percent of their power
    (``100 * 10 ** (-SQNR / 10)``), so a bar twice as long is a layer twice as damaging.
    """
    budgets = {_decision_key(record): record.get("budget") or {} for record in decisions}
    records = sorted(sensitivities, key=lambda s: (s["format"] != "ptl", s["quantizer"]))
    rows = min(top, max((len(s["layers"]) for s in records), default=1))
    fig, axes = plt.subplots(
        1, max(1, len(records)), figsize=(6.5 * max(1, len(records)), 0.3 * rows + 2.0),
        squeeze=False,
    )  # fmt: skip
    for axis, record in zip(axes[0], records, strict=False):
        budget = budgets.get((record["format"], record["quantizer"]), {})
        kept = set(budget.get("fp32_layers") or [])
        layers = record["layers"][:top]
        noise = [100 * 10 ** (-layer["sqnr_db"] / 10) for layer in layers]
        colours = ["tab:red" if layer["layer"] in kept else "tab:blue" for layer in layers]
        axis.barh(range(len(layers)), noise, color=colours)
        axis.set_yticks(
            range(len(layers)), [f"{x['layer']} ({x['type']})" for x in layers], fontsize=7
        )
        axis.invert_yaxis()  # most damaging at the top
        axis.set_xlabel("logit noise with only this layer int8 (% of signal power)")
        status = f"{len(kept)} kept in fp32 (red)" if kept else "every layer int8"
        if budget.get("loss") is not None:
            status += f", int8 loss {budget['loss']:.2f} points on the calibration split"
        axis.set_title(
            f".{record['format']} {record['quantizer']}: {min(top, len(record['layers']))} of "
            f"{len(record['layers'])} layers, most damaging first\n{status}",
            fontsize=9,
        )
        axis.grid(True, axis="x", alpha=0.3)
    model = records[0]["model"] if records else "?"
    fig.suptitle(f"{model}: int8 sensitivity per layer", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
