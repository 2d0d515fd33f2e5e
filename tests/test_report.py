"""Plots and summary.md: what a reader needs to pick an artifact is on them (no workflow run)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from PIL import Image

from mobileforge import report, summary_tables
from mobileforge.summary import COLUMNS, build_rows, summarize
from tests.paired import record_of

DEVICES = {"host": {"kind": "host", "engine": "x86"}}
PEAKS = {
    "host": {
        "threads": 1,
        "host": {"cpu_model": "AMD EPYC"},
        "cpu_features": ["avx2"],
        "peak": {
            "fp32": {"gmacs": 119.0, "kernel": "XNNPACK"},
            "int8": {"gmacs": 467.0, "kernel": "fbgemm"},
        },
    }
}
# (variant, format, backend, p50 ms, top-1, size): ResNet-ish, with a structured-pruning sweep.
ARTIFACTS = [
    ("fp32", "ptl", "cpu", 7.0, 97.9, 44_000_000),
    ("int8", "ptl", "cpu", 0.50, 97.5, 11_300_000),
    ("fp32", "pte", "xnnpack", 2.8, 97.9, 44_700_000),
    ("int8", "pte", "xnnpack", 0.43, 97.3, 11_200_000),
    ("int8_pruned-channel-0.3", "pte", "xnnpack", 0.30, 96.0, 7_000_000),
    ("int8_pruned-channel-0.5", "pte", "xnnpack", 0.20, 90.0, 5_000_000),
]


def _summary(models=("resnet18", "tinycnn"), compressed=False) -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(0)
    sidecars, evaluations, benchmarks, samples, comparisons = [], {}, {}, {}, {}
    for scale, model in zip((1.0, 0.1), models, strict=False):
        entries = []
        for variant, fmt, backend, p50, accuracy, size in ARTIFACTS:
            engine = "x86" if fmt == "ptl" and variant != "fp32" else None
            stem = ".".join([variant] + ([engine] if engine else []) + [backend])
            path = f"results/{model}/{fmt}/{stem}.{fmt}"
            sidecars.append(
                {
                    "artifact": path,
                    "model": model,
                    "variant": variant,
                    "format": fmt,
                    "backend": backend,
                    "engine": engine,
                    "size_bytes": int(size * scale),
                    "macs": int(1.8e9 * scale),
                }
            )
            evaluations[path] = {"accuracy": accuracy}
            runs = list(p50 * scale * np.exp(rng.normal(0, 0.03, 40)))
            entries.append({"path": path, "variant": variant, "format": fmt, "backend": backend})
            benchmarks[(path, "host")] = {
                "latency_ms": {"p50": float(np.median(runs))},
                "runs": [{"samples_ms": runs}],
                "load_ms": 20.0,
                "peak_rss_mb": 250.0,
                "threads_applied": 1,
            }
            samples[(path, "host")] = {"samples_ms": runs, "rss_before_load_mb": 220.0}
        latency = [p50 * scale for _, _, _, p50, _, _ in ARTIFACTS]
        comparisons[(model, "host")] = record_of(entries, latency)
    rows = build_rows(sidecars, evaluations, benchmarks, DEVICES, PEAKS, comparisons=comparisons)
    frame = summarize(rows, accuracy_budget=1.0, comparisons=comparisons)
    if compressed:
        frame["compressed_bytes"] = (frame["size_bytes"] * 0.6).astype(int)
    return frame, samples


def _texts(fig) -> list[str]:
    texts = [t.get_text() for t in fig.texts]
    for axis in fig.axes:
        texts += [t.get_text() for t in axis.texts]
        texts += [axis.get_title(loc) for loc in ("left", "center", "right")]
        texts += [t.get_text() for t in axis.get_yticklabels()]
    for legend in fig.legends + [a.get_legend() for a in fig.axes if a.get_legend()]:
        texts += [t.get_text() for t in legend.get_texts()]
    return texts


def test_latency_accuracy_one_panel_per_model_with_front_and_best_named():
    frame, _ = _summary()
    fig = report.latency_accuracy_figure(frame, "host", accuracy_budget=1.0)
    panels = [axis for axis in fig.axes if axis.get_visible()]
    assert [axis.get_title(loc="left") for axis in panels] == ["resnet18", "tinycnn"]
    texts = _texts(fig)
    for panel, model in zip(panels, ["resnet18", "tinycnn"], strict=True):
        assert panel.get_xscale() == "log"
        assert "ms" in panel.get_xlabel() and "%" in panel.get_ylabel()
        best = frame[(frame["model"] == model) & frame["best"]].iloc[0]
        # The best artifact is named on its panel: int8 .pte xnnpack (the pruned sweep points
        # are faster but over the accuracy budget).
        assert panel.get_title(loc="right").startswith("best: int8 .pte xnnpack")
        assert best["variant"] == "int8" and best["format"] == "pte"
        front = frame[(frame["model"] == model) & frame["pareto"]].sort_values("latency_ms_p50")
        lines = [line for line in panel.get_lines() if line.get_linestyle() == "--"]
        assert len(lines) == 1
        assert list(lines[0].get_xdata()) == pytest.approx(list(front["latency_ms_p50"]))
    # Legends name formats and every variant, sweep points included, with distinct markers.
    for expected in [
        ".ptl cpu (lite interpreter)",
        ".pte xnnpack (ExecuTorch)",
        "Pareto front",
        "best",
        "variant int8_pruned-channel-0.3",
        "variant int8_pruned-channel-0.5",
    ]:
        assert expected in texts
    styles = report.Styles(frame)
    assert len(set(styles.markers.values())) == len(styles.markers) == 4
    assert to_hex(styles.colours[("ptl", "cpu")]) != to_hex(styles.colours[("pte", "xnnpack")])


def test_latency_distribution_draws_every_artifacts_samples():
    frame, samples = _summary()
    fig = report.latency_distribution_figure(frame, samples, "host", "resnet18")
    axis = fig.axes[0]
    labels = [t.get_text() for t in axis.get_yticklabels()]
    assert len(labels) == len(ARTIFACTS)
    assert "int8 .pte xnnpack  [best]" in labels
    assert labels[-1].startswith("int8_pruned-channel-0.5")  # fastest on top
    dots = sum(len(c.get_offsets()) for c in axis.collections)
    assert dots == 40 * len(ARTIFACTS)  # every single run is drawn
    assert axis.get_xscale() == "log"


def test_sizes_log_axis_and_compressed_bars_only_where_the_summary_has_them():
    frame, _ = _summary()
    fig = report.sizes_figure(frame, "tinycnn")
    axis = fig.axes[0]
    assert axis.get_yscale() == "log"
    assert not [p for p in axis.patches if p.get_hatch()]
    assert len(axis.patches) == len(ARTIFACTS)
    frame, _ = _summary(compressed=True)
    axis = report.sizes_figure(frame, "tinycnn").axes[0]
    hatched = [p for p in axis.patches if p.get_hatch()]
    assert len(hatched) == len(ARTIFACTS)
    assert "hatched: compressed size" in _texts(axis.figure)


def test_every_figure_kind_writes_a_png(tmp_path):
    frame, samples = _summary()
    for kind, device, model in [
        ("latency_accuracy", "host", None),
        ("latency_distribution", "host", "tinycnn"),
        ("load_memory", "host", "tinycnn"),
        ("sizes", None, "tinycnn"),
        ("latency_distribution", "host", "unmeasured"),
    ]:
        path = tmp_path / f"{kind}-{model}.png"
        report.plot_figure(kind, frame, samples, device, model, path, 1.0)
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 300
            assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 10  # not blank


def _recovery_record(amount: float, holdout: list[float], best: int, stopped: str) -> dict:
    history = [
        {
            "epoch": i + 1,
            "step": 1,
            "loss": 1.0,
            "train_acc": 50.0,
            "holdout_acc": acc,
            "seconds": 1.0,
        }  # fmt: skip
        for i, acc in enumerate(holdout)
    ]
    return {
        "method": "channel", "amount": amount, "scope": "layer", "round_to": 8,
        "importance": "l2", "kept_layers": ["stem", "head"],
        "before": {"macs": 100, "params": 10}, "after": {"macs": 50, "params": 5},
        "steps": [{"step": 1, "amount": amount, "macs": 50, "params": 6}],
        "finetune": {"epochs": 6},
        "recovery": {
            "holdout_images": 100, "reference_holdout_acc": 90.0, "accuracy_budget": 1.0,
            "int8_margin": 0.5, "target_acc": 89.5, "ceiling": 6, "stopped": stopped,
            "best_epoch": best, "epochs_used": len(holdout), "seconds": 9.0, "history": history,
        },
    }  # fmt: skip


def test_recovery_figure_draws_the_curve_reference_target_and_kept_epoch(tmp_path):
    from mobileforge import records

    points = {
        "channel-0.7": _recovery_record(0.7, [70.0, 80.0, 78.0, 79.0], 2, "patience"),
        "channel-0.5": _recovery_record(0.5, [85.0, 89.75], 2, "within_budget"),
    }
    for record in points.values():
        records.check(records.ChannelPruneRecord, record, "test")
    fig = report.recovery_figure(points, "m")
    low, high = fig.axes  # by amount
    assert "channel-0.5: within budget, 2 of 6 epochs" in low.get_title()
    assert "channel-0.7: patience, 4 of 6 epochs" in high.get_title()
    lines = {line.get_label(): line for line in high.get_lines()}
    assert list(lines["pruned, held-back top-1"].get_ydata()) == [70.0, 80.0, 78.0, 79.0]
    assert list(lines["unpruned"].get_ydata()) == [90.0, 90.0]
    assert list(lines["target (budget - int8 margin)"].get_ydata()) == [89.5, 89.5]
    star = lines["kept epoch"]
    assert list(star.get_xdata()) == [2] and list(star.get_ydata()) == [80.0]
    path = tmp_path / "recovery.png"
    report.plot_recovery(points, "m", path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300


def test_summary_md_links_the_recovery_figures(tmp_path):
    frame, _ = _summary()
    results = tmp_path / "results"
    (results / "report").mkdir(parents=True)
    figure = str(results / "report" / "recovery" / "m.png")
    summary_tables.write_summaries(
        frame, PEAKS, 1.0, results / "summary.csv", results / "summary.md",
        results / "report" / "summary.html", recovery={"m": figure},
    )  # fmt: skip
    markdown = (results / "summary.md").read_text()
    assert "## How the channel points recovered" in markdown
    assert "[m](report/recovery/m.png)" in markdown
    assert 'href="recovery/m.png"' in (results / "report" / "summary.html").read_text()


def test_summary_md_puts_the_best_per_model_and_device_first():
    frame, _ = _summary()
    parts = summary_tables.sections(frame, PEAKS, 1.0)
    markdown = summary_tables.to_markdown(parts)
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Best artifact per model and device",
        "## Peak throughput of each host (roofline ceiling)",
        "## All artifacts",
    ]
    best_rows = parts[0].rows
    assert [row[:5] for row in best_rows] == [
        ["resnet18", "host", "results/resnet18/pte/int8.xnnpack.pte", ".pte", "int8"],
        ["tinycnn", "host", "results/tinycnn/pte/int8.xnnpack.pte", ".pte", "int8"],
    ]
    assert parts[0].header[5:11] == [
        "p50 ms [95 % CI]",
        "speedup vs fp32",
        "vs ExecuTorch by hand",
        "size",
        "Δ top-1 (pt)",
        "roofline",
    ]
    # fp32 .pte 2.8 ms over int8 0.43 ms, timed in pairs: 6.5x, with its interval.
    speedup, interval = best_rows[0][6].split("× ")
    assert float(speedup) == pytest.approx(2.8 / 0.43, rel=0.02) and interval.startswith("[")
    assert best_rows[0][7] == "1×"  # it is the faster plain .pte program itself
    assert best_rows[0][8] == "11.2 MB" and best_rows[0][9] == "-0.6"
    # 1.8 G MACs in ~0.43 ms against the 467 GMAC/s int8 peak: about 0.9 %.
    p50 = frame[frame["best"]].iloc[0]["latency_ms_p50"]
    assert best_rows[0][10] == f"{100 * 1.8e9 / p50 / 1e6 / 467.0:.1f} %"
    assert parts[2].header == COLUMNS and len(parts[2].rows) == len(frame)
    assert "| host | AMD EPYC (avx2) | 1 | 119.0 (XNNPACK) | 467.0 (fbgemm) |" in markdown
    html = summary_tables.to_html(parts)
    assert html.count("<table>") == 3 and "results/tinycnn/pte/int8.xnnpack.pte" in html


def test_a_p50_outside_the_interval_of_the_pooled_median_still_draws(tmp_path):
    # p50 is the median of the processes' medians, the interval that of every run pooled: they
    # can disagree (a default run's plots once failed on a negative error bar).
    frame, samples = _summary(models=("resnet18",))
    frame.loc[0, "latency_ms_ci_low"] = frame.loc[0, "latency_ms_p50"] * 1.01
    frame.loc[0, "latency_ms_ci_high"] = frame.loc[0, "latency_ms_p50"] * 1.02
    path = tmp_path / "la.png"
    report.plot_figure("latency_accuracy", frame, samples, "host", None, str(path), 1.0)
    assert path.stat().st_size > 10_000
