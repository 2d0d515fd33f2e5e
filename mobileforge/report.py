"""Plots of results/summary.csv for people deciding which artifact to ship.

* :func:`plot_latency_accuracy`, per device, one panel per model: p50 latency (log x, with the
  95 % interval of the median) against top-1; one colour per format (and backend), one marker per
  variant, the Pareto front as a dashed line, the ``best`` artifact ringed and named.
* :func:`plot_latency_distribution`, per device and model: every timed run of every artifact as a
  box plot with the runs themselves on top, so a noisy measurement looks noisy.
* :func:`plot_load_memory`, per device and model: load time and peak RSS of each artifact.
* :func:`plot_sizes`, per model: file size by variant and format on a log axis, with the
  compressed size beside it where the summary has a ``compressed_bytes`` column.

Variants are whatever the summary holds (``int8_pruned-channel-0.5`` included): markers are
assigned in a stable order, never from a fixed list. Wrapped by Snakemake's ``report()`` so
``snakemake --report report.html`` shows them. Torch-free; matplotlib's Agg backend.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on build machines

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from mobileforge import files  # noqa: E402
from mobileforge.bench.stats import benchmark_samples  # noqa: E402
from mobileforge.budget import within  # noqa: E402
from mobileforge.selection import label as artifact_label  # noqa: E402

DPI = 110
#: Marker per variant, in variant order (fp32 first, then by name); cycles past the end.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "d", "8")
#: Colour per (format, backend), in style order (.ptl first, then .pte, then by name).
COLOURS = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
    "tab:gray",
    "tab:red",
)
BEST_COLOUR = "crimson"
RUNTIMES = {"ptl": "lite interpreter", "pte": "ExecuTorch"}

Samples = Mapping[tuple[str, str], Mapping[str, Any]]


# ------------------------------------------------------------------------------- styles
def variant_order(variants: Sequence[str]) -> list[str]:
    return sorted(set(variants), key=lambda v: (v != "fp32", v))


def style_order(summary: pd.DataFrame) -> list[tuple[str, str]]:
    keys = set(zip(summary["format"], summary["backend"], strict=True))
    return sorted(keys, key=lambda key: ({"ptl": 0, "pte": 1}.get(key[0], 2), key))


class Styles:
    """Colours and markers shared by every figure of one summary, so they read alike."""

    def __init__(self, summary: pd.DataFrame) -> None:
        keys = style_order(summary)
        self.colours = {key: COLOURS[i % len(COLOURS)] for i, key in enumerate(keys)}
        variants = variant_order(list(summary["variant"]))
        self.markers = {v: MARKERS[i % len(MARKERS)] for i, v in enumerate(variants)}

    def colour(self, row: pd.Series) -> str:
        return self.colours.get((row["format"], row["backend"]), "black")

    def marker(self, variant: str) -> str:
        return self.markers.get(variant, "x")

    @staticmethod
    def format_label(key: tuple[str, str]) -> str:
        fmt, backend = key
        return f".{fmt} {backend} ({RUNTIMES.get(fmt, fmt)})"

    def format_handles(self, keys: Sequence[tuple[str, str]] | None = None) -> list[Any]:
        keys = list(self.colours) if keys is None else keys
        return [Patch(color=self.colours[key], label=self.format_label(key)) for key in keys]

    def variant_handles(self, variants: Sequence[str] | None = None) -> list[Any]:
        variants = list(self.markers) if variants is None else variant_order(variants)
        return [
            Line2D(
                [],
                [],
                linestyle="",
                marker=self.marker(v),
                color="0.35",
                markersize=8,
                label=f"variant {v}",
            )
            for v in variants
        ]


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value) and not (isinstance(value, float) and math.isnan(value))


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _plain_log_axis(axis: Any, which: str = "x") -> None:
    """Log scale whose ticks read as plain numbers (0.05, 0.1, 0.2), minor ticks at 2 and 5."""
    target = axis.xaxis if which == "x" else axis.yaxis
    (axis.set_xscale if which == "x" else axis.set_yscale)("log")
    target.set_minor_locator(ticker.LogLocator(base=10, subs=(2.0, 5.0)))
    target.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))

    def minor(value: float, _: int) -> str:  # labelled only while few decades are shown
        low, high = sorted(target.get_view_interval())
        return f"{value:g}" if low > 0 and high / low < 300 else ""

    target.set_minor_formatter(ticker.FuncFormatter(minor))


def _margins(
    fig: Any, left: float, right: float, top: float, bottom: float, **space: float
) -> None:
    """Place the axes with margins in inches: a fixed layout (tight_layout costs a second per
    figure measuring every tick label)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        top=1 - top / height,
        bottom=bottom / height,
        **space,
    )


def _label_inches(labels: Sequence[str], fontsize: float = 8.5) -> float:
    """Rough width of the longest tick label (DejaVu Sans averages ~0.58 em per character)."""
    longest = max((len(text) for text in labels), default=0)
    return 0.25 + longest * 0.58 * fontsize / 72


def _save(fig: Any, path: str | os.PathLike[str]) -> None:
    """Write the PNG atomically (a killed job leaves no half-written plot) and close it."""
    buffer = io.BytesIO()
    # Fast zlib level: the PNGs are a little larger, and saved in a third of the time.
    fig.savefig(buffer, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
    plt.close(fig)
    files.write_bytes_atomic(path, buffer.getvalue())


def _empty(axis: Any, text: str) -> None:
    axis.text(
        0.5, 0.5, text, ha="center", va="center", transform=axis.transAxes, color="0.4", wrap=True
    )
    axis.set_xticks([])
    axis.set_yticks([])


def _threads_text(rows: pd.DataFrame) -> str:
    threads = sorted({int(t) for t in rows["threads"] if _finite(t)})
    if not threads:
        return ""
    return ", " + "/".join(str(t) for t in threads) + (" thread" if threads == [1] else " threads")


# ------------------------------------------------------------------ latency vs accuracy
def latency_accuracy_figure(
    summary: pd.DataFrame, device: str, accuracy_budget: float | None = None
) -> Any:
    """The figure of :func:`plot_latency_accuracy` (returned for inspection)."""
    styles = Styles(summary)
    models = sorted(summary["model"].unique())
    on_device = summary[summary["device"] == device]
    ncols = max(1, min(3, len(models)))
    nrows = max(1, math.ceil(len(models) / ncols))
    width = max(6.0, 5.4 * ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 4.3 * nrows), squeeze=False)
    for axis in axes.flat[len(models) :]:
        axis.set_visible(False)
    for axis, model in zip(axes.flat, models, strict=False):
        rows = on_device[
            (on_device["model"] == model)
            & on_device["latency_ms_p50"].notna()
            & on_device["accuracy"].notna()
        ]
        axis.set_title(model, loc="left", fontweight="bold")
        if rows.empty:
            _empty(axis, f"no artifact of {model}\nwas measured on {device}")
            continue
        for _, row in rows.iterrows():
            _latency_accuracy_point(axis, row, styles, accuracy_budget)
        _pareto_and_best(axis, rows)
        axis.set_title(model, loc="left", fontweight="bold")
        _plain_log_axis(axis, "x")
        low_acc, high_acc = float(rows["accuracy"].min()), float(rows["accuracy"].max())
        pad = max(0.5, 0.12 * (high_acc - low_acc))
        axis.set_ylim(low_acc - pad, high_acc + pad)
        axis.set_xlabel("p50 latency per inference (ms, log scale)")
        axis.set_ylabel("top-1 accuracy of the artifact (%)")
        axis.grid(True, which="both", alpha=0.25)
    measured = on_device[on_device["latency_ms_p50"].notna()]
    handles = _latency_accuracy_legend(styles, measured, accuracy_budget)
    # As many legend columns as fit the width (about 2.7 in each); the figure grows to hold it.
    columns = max(1, min(4, len(handles), int(width // 2.7)))
    legend_inches = 0.2 * math.ceil(len(handles) / columns)
    fig.set_size_inches(width, 4.3 * nrows + legend_inches + 0.3)
    fig.legend(handles=handles, loc="lower center", ncol=columns, fontsize=8.5, frameon=False)
    fig.suptitle(
        f"{device}: p50 latency vs top-1 accuracy{_threads_text(measured)}", fontweight="bold"
    )
    _margins(
        fig, left=0.7, right=0.25, top=0.95, bottom=0.75 + legend_inches, wspace=0.28, hspace=0.55
    )
    return fig


def _latency_accuracy_point(
    axis: Any, row: pd.Series, styles: Styles, accuracy_budget: float | None
) -> None:
    """One artifact: its p50 against its accuracy, the interval of p50 as an error bar, faded
    when over the accuracy budget."""
    p50 = float(row["latency_ms_p50"])
    over_budget = accuracy_budget is not None and not within(row["accuracy_delta"], accuracy_budget)
    low, high = row.get("latency_ms_ci_low"), row.get("latency_ms_ci_high")
    if _finite(low) and _finite(high):
        axis.errorbar(
            p50,
            row["accuracy"],
            # The interval is of the median of every timed run, the point the median of the
            # processes' medians: the point may lie just outside it.
            xerr=[[max(0.0, p50 - low)], [max(0.0, high - p50)]],
            fmt="none",
            ecolor=styles.colour(row),
            alpha=0.6,
            capsize=3,
            zorder=2,
        )
    axis.scatter(
        p50,
        row["accuracy"],
        marker=styles.marker(row["variant"]),
        s=70,
        color=styles.colour(row),
        edgecolors="black",
        linewidths=0.6,
        alpha=0.35 if over_budget else 1.0,
        zorder=3,
    )


def _pareto_and_best(axis: Any, rows: pd.DataFrame) -> None:
    """The Pareto front as a dashed line, the ``best`` artifact ringed and named in the title."""
    front = rows[rows["pareto"].map(_bool)].sort_values("latency_ms_p50")
    if len(front):
        axis.plot(
            front["latency_ms_p50"],
            front["accuracy"],
            linestyle="--",
            color="0.3",
            linewidth=1.2,
            zorder=1,
        )
    best = rows[rows["best"].map(_bool)]
    for _, row in best.iterrows():
        axis.scatter(
            row["latency_ms_p50"],
            row["accuracy"],
            s=330,
            facecolors="none",
            edgecolors=BEST_COLOUR,
            linewidths=2.2,
            zorder=4,
        )
        axis.annotate(
            "best",
            xy=(row["latency_ms_p50"], row["accuracy"]),
            xytext=(11, -13),
            textcoords="offset points",
            color=BEST_COLOUR,
            fontsize=8.5,
            fontweight="bold",
            zorder=5,
        )
        tie = " (latency tie)" if str(row.get("best_reason", "")).startswith("tie") else ""
        axis.set_title(
            f"best: {artifact_label(row)}{tie}\n"
            f"{row['latency_ms_p50']:.3g} ms, {row['accuracy']:.1f} % top-1",
            fontsize=9,
            color=BEST_COLOUR,
            loc="right",
        )
    if best.empty:
        axis.set_title("no artifact within the accuracy budget", fontsize=9, loc="right")


def _latency_accuracy_legend(
    styles: Styles, measured: pd.DataFrame, accuracy_budget: float | None
) -> list[Any]:
    """The legend's entries: formats and variants shown, the front, best, the interval, and
    the fading of artifacts over the budget."""
    keys = [
        k
        for k in styles.colours
        if k in set(zip(measured["format"], measured["backend"], strict=True))
    ]
    handles = styles.format_handles(keys) + styles.variant_handles(list(measured["variant"]))
    handles += [
        Line2D([], [], linestyle="--", color="0.3", label="Pareto front"),
        Line2D(
            [],
            [],
            linestyle="",
            marker="o",
            markersize=13,
            markerfacecolor="none",
            markeredgecolor=BEST_COLOUR,
            markeredgewidth=2,
            label="best",
        ),
        Line2D([], [], color="0.4", marker="|", markersize=10, label="95 % interval of p50"),
    ]
    if accuracy_budget is not None:
        handles.append(
            Line2D(
                [],
                [],
                linestyle="",
                marker="o",
                color="0.35",
                alpha=0.35,
                markersize=8,
                label=f"faded: over the {accuracy_budget:g} pt accuracy budget",
            )
        )
    return handles


def plot_latency_accuracy(
    summary: pd.DataFrame,
    device: str,
    path: str | os.PathLike[str],
    accuracy_budget: float | None = None,
) -> None:
    """Per device, one panel per model: p50 (log) vs top-1, Pareto front, ``best`` named."""
    _save(latency_accuracy_figure(summary, device, accuracy_budget), path)


# ------------------------------------------------------------- per-run latency spread
def _measured(summary: pd.DataFrame, device: str, model: str) -> pd.DataFrame:
    rows = summary[
        (summary["device"] == device)
        & (summary["model"] == model)
        & summary["latency_ms_p50"].notna()
    ]
    return rows.sort_values("latency_ms_p50", ascending=False, kind="stable")  # fastest on top


def _row_label(row: pd.Series) -> str:
    text = artifact_label(row)
    if _bool(row.get("best")):
        text += "  [best]"
    if "contention" in str(row.get("note", "")):
        text += "  (other load)"
    return text


def latency_distribution_figure(
    summary: pd.DataFrame, samples: Samples, device: str, model: str
) -> Any:
    """The figure of :func:`plot_latency_distribution` (returned for inspection)."""
    styles = Styles(summary)
    rows = _measured(summary, device, model)
    rows = rows[[bool(samples.get((a, device), {}).get("samples_ms")) for a in rows["artifact"]]]
    labels = [_row_label(row) for _, row in rows.iterrows()]
    left = _label_inches(labels)
    fig, axis = plt.subplots(figsize=(left + 8.0, 1.9 + 0.5 * max(len(rows), 2)))
    _margins(fig, left=left, right=2.0, top=0.45, bottom=1.25)
    if rows.empty:
        _empty(axis, f"no per-run samples of {model} on {device}")
        axis.set_title(f"{model} on {device}: latency of each timed run")
        return fig
    data = [np.asarray(samples[(a, device)]["samples_ms"], dtype=float) for a in rows["artifact"]]
    positions = np.arange(1, len(rows) + 1)
    boxes = axis.boxplot(
        data,
        positions=positions,
        orientation="horizontal",
        widths=0.6,
        patch_artist=True,
        showfliers=False,
        medianprops={"color": "black", "linewidth": 1.6},
    )
    rng = np.random.default_rng(0)
    for position, values, box, (_, row) in zip(
        positions, data, boxes["boxes"], rows.iterrows(), strict=True
    ):
        colour = styles.colour(row)
        box.set_facecolor(colour)
        box.set_alpha(0.45)
        jitter = rng.uniform(-0.18, 0.18, size=len(values))
        axis.scatter(
            values, position + jitter, s=7, color=colour, edgecolors="none", alpha=0.8, zorder=3
        )
        spread = (np.percentile(values, 75) - np.percentile(values, 25)) / np.median(values)
        axis.annotate(
            f"p50 {np.median(values):.3g} ms, IQR {100 * spread:.0f} %",
            xy=(1.01, position),
            xycoords=("axes fraction", "data"),
            va="center",
            fontsize=8,
        )
    axis.set_yticks(positions, labels, fontsize=8.5)
    _plain_log_axis(axis, "x")
    axis.set_xlabel("latency of one timed run (ms, log scale)")
    counts = sorted({len(v) for v in data})
    runs = "/".join(str(c) for c in counts)
    axis.set_title(f"{model} on {device}: latency of each timed run ({runs} runs per artifact)")
    axis.grid(True, axis="x", which="both", alpha=0.25)
    keys = [
        k for k in styles.colours if k in set(zip(rows["format"], rows["backend"], strict=True))
    ]
    handles = styles.format_handles(keys) + [
        Line2D([], [], color="black", linewidth=1.6, label="median"),
        Patch(facecolor="0.8", edgecolor="black", label="box: quartiles, whiskers: 1.5 IQR"),
        Line2D(
            [], [], linestyle="", marker="o", markersize=3, color="0.3", label="dots: single runs"
        ),
    ]
    fig.legend(
        handles=handles, loc="lower center", ncol=min(3, len(handles)), fontsize=8, frameon=False
    )
    return fig


def plot_latency_distribution(
    summary: pd.DataFrame,
    samples: Samples,
    device: str,
    model: str,
    path: str | os.PathLike[str],
) -> None:
    """Per device and model: the per-iteration samples of every artifact, box plus runs."""
    _save(latency_distribution_figure(summary, samples, device, model), path)


# ------------------------------------------------------------------- load and memory
def load_memory_figure(summary: pd.DataFrame, samples: Samples, device: str, model: str) -> Any:
    """The figure of :func:`plot_load_memory` (returned for inspection)."""
    styles = Styles(summary)
    rows = _measured(summary, device, model)
    labels = [_row_label(row) for _, row in rows.iterrows()]
    left = _label_inches(labels)
    fig, (load_axis, rss_axis) = plt.subplots(
        1, 2, figsize=(left + 10.0, 2.1 + 0.45 * max(len(rows), 2)), sharey=True
    )
    _margins(fig, left=left, right=0.3, top=0.75, bottom=1.1, wspace=0.12)
    fig.suptitle(
        f"{model} on {device}: load time and peak memory of each artifact", fontweight="bold"
    )
    if rows.empty:
        _empty(load_axis, f"no artifact of {model} was measured on {device}")
        rss_axis.set_visible(False)
        return fig
    positions = np.arange(len(rows))
    colours = [styles.colour(row) for _, row in rows.iterrows()]
    load = rows["load_ms"].astype(float).to_numpy()
    load_axis.barh(positions, np.nan_to_num(load), color=colours, edgecolor="black", linewidth=0.5)
    for position, value in zip(positions, load, strict=True):
        text = f" {value:.3g} ms" if _finite(value) else " not reported"
        load_axis.text(np.nan_to_num(value), position, text, va="center", fontsize=8)
    load_axis.set_xlabel("load time (ms): file to runnable module")
    load_axis.set_title("load time")
    load_axis.set_yticks(positions, labels, fontsize=8.5)
    load_axis.margins(x=0.3)

    peak = rows["peak_rss_mb"].astype(float).to_numpy()
    before = np.asarray(
        [
            float(samples.get((a, device), {}).get("rss_before_load_mb") or math.nan)
            for a in rows["artifact"]
        ]
    )
    rss_axis.barh(
        positions,
        np.nan_to_num(peak),
        color=colours,
        edgecolor="black",
        linewidth=0.5,
        label="peak RSS of the benchmark process",
    )
    if np.isfinite(before).any():
        rss_axis.barh(
            positions,
            np.nan_to_num(before),
            height=0.35,
            color="0.25",
            label="RSS before loading the artifact (runtime alone)",
        )
    for position, value in zip(positions, peak, strict=True):
        text = f" {value:.0f} MiB" if _finite(value) else " not reported"
        rss_axis.text(np.nan_to_num(value), position, text, va="center", fontsize=8)
    rss_axis.set_xlabel("resident memory (MiB)")
    rss_axis.set_title("peak RSS")
    rss_axis.margins(x=0.25)
    handles = styles.format_handles(
        [k for k in styles.colours if k in set(zip(rows["format"], rows["backend"], strict=True))]
    )
    if np.isfinite(before).any():
        handles.append(Patch(color="0.25", label="inner bar: RSS before loading the artifact"))
    fig.legend(
        handles=handles, loc="lower center", ncol=min(3, len(handles)), fontsize=8, frameon=False
    )
    return fig


def plot_load_memory(
    summary: pd.DataFrame,
    samples: Samples,
    device: str,
    model: str,
    path: str | os.PathLike[str],
) -> None:
    """Per device and model: load time and peak RSS by artifact."""
    _save(load_memory_figure(summary, samples, device, model), path)


# ------------------------------------------------------------------------------ sizes
def _size_text(value: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


def sizes_figure(summary: pd.DataFrame, model: str) -> Any:
    """The figure of :func:`plot_sizes` (returned for inspection)."""
    styles = Styles(summary)
    artifacts = summary[summary["model"] == model].drop_duplicates("artifact")
    compressed = "compressed_bytes" in artifacts and artifacts["compressed_bytes"].notna().any()
    variants = variant_order(list(artifacts["variant"]))
    keys = [
        k
        for k in styles.colours
        if k in set(zip(artifacts["format"], artifacts["backend"], strict=True))
    ]
    fig, axis = plt.subplots(figsize=(max(6.5, 1.2 + 1.1 * len(variants) * max(len(keys), 1)), 5.0))
    _margins(fig, left=0.85, right=0.2, top=0.4, bottom=0.65)
    if artifacts.empty:
        _empty(axis, f"no artifact of {model}")
        return fig
    per_group = max(
        len(artifacts[artifacts["variant"] == v]) * (2 if compressed else 1) for v in variants
    )
    width = 0.8 / per_group
    ticks = []
    for group, variant in enumerate(variants):
        members = artifacts[artifacts["variant"] == variant].copy()
        members["order"] = [
            keys.index((f, b)) for f, b in zip(members["format"], members["backend"], strict=True)
        ]
        members = members.sort_values(["order", "engine"], kind="stable")
        bars = []
        for _, row in members.iterrows():
            bars.append((row, float(row["size_bytes"]), False))
            if compressed and _finite(row.get("compressed_bytes")):
                bars.append((row, float(row["compressed_bytes"]), True))
        start = group - width * (len(bars) - 1) / 2
        for i, (row, value, packed) in enumerate(bars):
            x = start + i * width
            axis.bar(
                x,
                value,
                width=width * 0.92,
                color=styles.colour(row),
                edgecolor="black",
                linewidth=0.5,
                hatch="///" if packed else None,
                alpha=0.55 if packed else 1.0,
            )
            engine = row["engine"] if isinstance(row["engine"], str) and row["engine"] else ""
            text = _size_text(value) + (f" ({engine})" if engine and not packed else "")
            axis.text(x, value * 1.08, text, ha="center", va="bottom", rotation=90, fontsize=7.5)
        ticks.append(group)
    axis.set_xticks(ticks, [f"variant\n{v}" for v in variants], fontsize=8.5)
    axis.set_yscale("log")
    axis.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _size_text(v)))
    top = float(artifacts["size_bytes"].max())
    bottom = float(artifacts["size_bytes"].min())
    if compressed:
        bottom = min(bottom, float(artifacts["compressed_bytes"].min()))
    axis.set_ylim(bottom / 3, top * 12)
    axis.set_ylabel("file size (log scale)")
    axis.set_title(f"{model}: artifact size by variant and format")
    axis.grid(True, axis="y", which="major", alpha=0.3)
    handles = styles.format_handles(keys)
    if compressed:
        handles.append(
            Patch(
                facecolor="white", edgecolor="black", hatch="///", label="hatched: compressed size"
            )
        )
    axis.legend(handles=handles, loc="upper right", fontsize=8)
    return fig


def plot_sizes(summary: pd.DataFrame, model: str, path: str | os.PathLike[str]) -> None:
    """Per model: artifact size by variant and format (log), compressed size beside it."""
    _save(sizes_figure(summary, model), path)


def plot_figure(
    kind: str,
    summary: pd.DataFrame,
    samples: Samples,
    device: str | None,
    model: str | None,
    path: str | os.PathLike[str],
    accuracy_budget: float | None = None,
) -> None:
    """Draw one figure of the report (``kind`` as in :class:`mobileforge.plan.Figure`)."""
    if kind == "latency_accuracy":
        plot_latency_accuracy(summary, str(device), path, accuracy_budget)
    elif kind == "latency_distribution":
        plot_latency_distribution(summary, samples, str(device), str(model), path)
    elif kind == "load_memory":
        plot_load_memory(summary, samples, str(device), str(model), path)
    elif kind == "sizes":
        plot_sizes(summary, str(model), path)
    else:
        raise ValueError(f"unknown figure kind {kind!r}")


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


def recovery_figure(points: Mapping[str, Mapping[str, Any]], model: str) -> Any:
    """One panel per channel point (``points``: label -> its
    :class:`mobileforge.records.ChannelPruneRecord`): the held-back top-1 after every fine-tune
    epoch, all pruning steps in order, the unpruned model's score and the target as lines, the
    epoch whose weights were kept marked, and why the fine-tune stopped."""
    labels = sorted(points, key=lambda label: points[label]["amount"])
    fig, axes = plt.subplots(
        1, max(1, len(labels)), figsize=(max(6.0, 4.6 * len(labels)), 3.8), squeeze=False
    )
    for axis, label in zip(axes[0], labels, strict=False):
        _recovery_panel(axis, label, points[label])
    if not labels:
        _empty(axes[0][0], "no channel point")
    fig.suptitle(f"{model}: recovery of its channel points", fontsize=11)
    fig.tight_layout()
    return fig


def plot_recovery(
    points: Mapping[str, Mapping[str, Any]], model: str, path: str | os.PathLike[str]
) -> None:
    """:func:`recovery_figure`, written to ``path``."""
    _save(recovery_figure(points, model), path)


def _recovery_panel(axis: Any, label: str, record: Mapping[str, Any]) -> None:
    recovery = record["recovery"]
    history = recovery["history"]
    last_step = max((epoch["step"] for epoch in history), default=1)
    xs = list(range(1, len(history) + 1))
    scores = [np.nan if e["holdout_acc"] is None else e["holdout_acc"] for e in history]
    axis.plot(xs, scores, marker="o", color="tab:blue", label="pruned, held-back top-1")
    for index in range(1, len(history)):  # where a pruning step starts
        if history[index]["step"] != history[index - 1]["step"]:
            axis.axvline(index + 0.5, color="grey", linestyle=":", linewidth=1)
    if recovery["reference_holdout_acc"] is not None:
        axis.axhline(recovery["reference_holdout_acc"], color="black", linewidth=1,
                     label="unpruned")  # fmt: skip
        axis.axhline(recovery["target_acc"], color="tab:green", linestyle="--", linewidth=1,
                     label="target (budget - int8 margin)")  # fmt: skip
    if recovery["best_epoch"] is not None and history:
        kept = next(
            x
            for x, e in zip(xs, history, strict=True)
            if e["step"] == last_step and e["epoch"] == recovery["best_epoch"]
        )
        axis.plot([kept], [scores[kept - 1]], marker="*", markersize=16, color="tab:red",
                  linestyle="none", label="kept epoch")  # fmt: skip
    if not history:
        _empty(axis, "no fine-tuning (prune.finetune.epochs 0)")
    elif all(np.isnan(scores)):
        _empty(axis, "no held-back part (train.holdout 0)")
    steps = len(record["steps"])
    axis.set_title(
        f"{label}: {recovery['stopped'].replace('_', ' ')}, "
        f"{recovery['epochs_used']} of {recovery['ceiling']} epochs"
        + (f"\n{steps} pruning steps (dotted: a step starts)" if steps > 1 else ""),
        fontsize=9,
    )
    axis.set_xlabel("fine-tune epoch" + (" (all steps)" if steps > 1 else ""))
    axis.set_ylabel("top-1 on the held-back train images (%)")
    axis.set_xlim(0.5, max(1, len(history)) + 0.5)
    axis.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7, loc="best")


def draw_figures(
    figures: Sequence[dict[str, Any]],
    summary: pd.DataFrame,
    benchmarks: Sequence[dict[str, Any]],
    accuracy_budget: float,
    log: Callable[[str], Any] | None = None,
) -> None:
    """Every figure of ``figures`` (kind, device, model, path: ``plan.figures``) from the summary
    and the benchmark records' per-iteration samples."""
    samples = {
        (record["artifact"], record["device"]): {
            "samples_ms": benchmark_samples(record),
            "rss_before_load_mb": record.get("rss_before_load_mb"),
        }
        for record in benchmarks
    }
    for figure in figures:
        plot_figure(
            figure["kind"], summary, samples, figure["device"], figure["model"], figure["path"],
            accuracy_budget,
        )  # fmt: skip
        if log:
            log(f"wrote {figure['path']}")
