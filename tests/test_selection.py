"""Pareto front and a `best` decided by paired comparisons (mobileforge.selection)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mobileforge.selection import choose_best, median_interval, pareto_front
from tests.paired import record_of


def _samples(p50: float, spread: float, n: int = 50, seed: int = 0) -> list[float]:
    """Latency samples around ``p50`` with relative ``spread`` (log-normal, like timings)."""
    rng = np.random.default_rng(seed)
    return list(p50 * np.exp(rng.normal(0.0, spread, n)))


def _row(
    name, p50, accuracy, size=1000, samples=None, cv=None, delta=None, model="m", device="host"
):
    low, high = median_interval(samples) if samples is not None else (math.nan, math.nan)
    return {
        "model": model,
        "device": device,
        "variant": name,
        "format": "pte",
        "backend": "xnnpack",
        "engine": "",
        "artifact": f"results/{model}/pte/{name}.pte",
        "latency_ms_p50": p50,
        "accuracy": accuracy,
        "accuracy_delta": accuracy - 95.0 if delta is None else delta,
        "size_bytes": size,
        "latency_ms_ci_low": low,
        "latency_ms_ci_high": high,
        "latency_cv": cv,
    }


def test_median_interval_brackets_the_median_and_shrinks_with_less_noise():
    noisy = _samples(1.0, 0.20)
    quiet = _samples(1.0, 0.02)
    low, high = median_interval(noisy)
    assert low <= float(np.median(noisy)) <= high
    q_low, q_high = median_interval(quiet)
    assert (q_high - q_low) < (high - low) / 5
    assert median_interval(noisy) == (low, high)  # fixed seed: a summary is reproducible
    assert all(math.isnan(v) for v in median_interval([]))


def test_pareto_front_keeps_rows_no_other_beats_on_both():
    frame = pd.DataFrame(
        [
            _row("a", 1.0, 90.0),  # fastest: on the front
            _row("b", 2.0, 95.0),  # slower but more accurate: on the front
            _row("c", 3.0, 94.0),  # slower and less accurate than b: dominated
            _row("d", 2.0, 93.0),  # as fast as b, less accurate: dominated
            _row("e", 5.0, 96.0),  # slowest, most accurate: on the front
            _row("f", math.nan, 99.0),  # not measured: never on the front
            _row("g", 0.5, 80.0, device="phone"),  # another device: its own front
        ]
    )
    front = pareto_front(frame)
    assert dict(zip(frame["variant"], front, strict=True)) == {
        "a": True,
        "b": True,
        "c": False,
        "d": False,
        "e": True,
        "f": False,
        "g": True,
    }


def _compared(rows, latency, copy_latency=None):
    """A frame of ``rows`` and their comparison on their model and device, at ``latency``."""
    frame = pd.DataFrame(rows)
    entries = [{"path": row["artifact"], "variant": row["variant"], "format": row["format"],
                "backend": row["backend"]} for row in rows]  # fmt: skip
    record = record_of(entries, latency, copy_latency)
    return frame, {(rows[0]["model"], rows[0]["device"]): record}


def test_the_paired_fastest_wins_when_beyond_the_aa_resolution():
    frame, comparisons = _compared([_row("fp32", 5.0, 95.0), _row("int8", 2.0, 94.5)], [5.0, 2.0])
    best, reason = choose_best(frame, comparisons, accuracy_budget=1.0)
    assert list(frame["variant"][best]) == ["int8"]
    assert (
        reason[best].item().startswith("fastest (paired): the next, fp32 .pte xnnpack, takes 2.5")
    )


def test_an_unstructured_twin_on_the_same_kernels_ties_and_the_dense_int8_wins():
    # The case: the same dense kernels; its p50 "difference" was load on one benchmark.
    rows = [_row("int8", 1.85, 95.0, size=11_345_589),
            _row("int8_pruned-l1_unstructured-0.3", 1.33, 95.0, size=11_345_589)]  # fmt: skip
    frame, comparisons = _compared(rows, [1.0, 1.0])
    best, reason = choose_best(frame, comparisons, accuracy_budget=1.0)
    assert list(frame["variant"][best]) == ["int8"]
    assert reason[best].item().startswith("tie on latency with int8_pruned-l1_unstructured-0.3")
    assert reason[best].item().endswith("as accurate and as small: chose the unpruned artifact")


def test_a_tie_goes_to_the_more_accurate_then_the_smaller():
    rows = [_row("a", 1.0, 95.0, size=2000), _row("b", 1.0, 95.5, size=3000)]
    frame, comparisons = _compared(rows, [1.0, 1.0])
    best, reason = choose_best(frame, comparisons, accuracy_budget=1.0)
    assert list(frame["variant"][best]) == ["b"] and reason[best].item().endswith("most accurate")
    rows = [_row("a", 1.0, 95.0, size=2000), _row("b", 1.0, 95.0, size=1000)]
    frame, comparisons = _compared(rows, [1.0, 1.0])
    best, reason = choose_best(frame, comparisons, accuracy_budget=1.0)
    assert list(frame["variant"][best]) == ["b"]
    assert reason[best].item().endswith("chose the smallest of the most accurate")


def test_over_budget_artifacts_are_never_best_however_fast():
    rows = [_row("int8", 2.0, 95.0), _row("pruned", 0.5, 90.0)]
    frame, comparisons = _compared(rows, [2.0, 0.5])
    best, _ = choose_best(frame, comparisons, accuracy_budget=1.0)
    assert list(frame["variant"][best]) == ["int8"]
    best, _ = choose_best(frame, comparisons, accuracy_budget=20.0)
    assert list(frame["variant"][best]) == ["pruned"]


def test_a_failed_aa_control_decides_nothing():
    rows = [_row("fp32", 5.0, 95.0), _row("int8", 2.0, 94.5)]
    frame, comparisons = _compared(rows, [5.0, 2.0], copy_latency=5.5)
    assert not next(iter(comparisons.values()))["reliable"]
    best, reason = choose_best(frame, comparisons, accuracy_budget=1.0)
    assert not best.any() and (reason == "").all()


def test_no_comparison_no_best_and_one_best_per_model_and_device():
    host = [_row("a", 1.0, 95.0), _row("b", 2.0, 95.0)]
    other = [_row("a", 3.0, 95.0, model="n"), _row("b", 1.5, 95.0, model="n")]
    phone = [_row("a", 3.0, 95.0, device="phone")]
    frame = pd.DataFrame(host + other + phone)
    comparisons = {**_compared(host, [1.0, 2.0])[1], **_compared(other, [3.0, 1.5])[1]}
    best, _ = choose_best(frame, comparisons, accuracy_budget=1.0)
    picked = frame[best]
    assert sorted(zip(picked["model"], picked["device"], picked["variant"], strict=True)) == [
        ("m", "host", "a"),
        ("n", "host", "b"),
    ]
