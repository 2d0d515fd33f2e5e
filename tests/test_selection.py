"""Pareto front and a `best` that noise cannot decide (mobileforge.selection)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mobileforge.selection import choose_best, indistinguishable, median_interval, pareto_front


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


def test_distinguishable_latencies_pick_the_fastest():
    frame = pd.DataFrame(
        [
            _row("int8", 1.0, 94.5, samples=_samples(1.0, 0.03)),
            _row("fp32", 2.0, 95.0, samples=_samples(2.0, 0.03, seed=1)),
        ]
    )
    best, reason = choose_best(frame, accuracy_budget=1.0)
    assert list(frame["variant"][best]) == ["int8"]
    assert reason[best].item().startswith("fastest; the next, fp32 .pte xnnpack at 2 ms")


def test_issue_example_noise_cannot_make_the_pruned_twin_best():
    # ResNet-18 on a busy run: int8_pruned 0.192 ms "beat" int8 0.208 ms, the same kernels and
    # bytes; their samples overlap, so the more accurate int8 must win.
    pruned = _samples(0.192, 0.25, seed=2)
    dense = _samples(0.208, 0.25, seed=3)
    frame = pd.DataFrame(
        [
            _row("int8_pruned", float(np.median(pruned)), 94.5, size=11_260_200, samples=pruned),
            _row("int8", float(np.median(dense)), 95.0, size=11_260_200, samples=dense),
        ]
    )
    assert frame.loc[0, "latency_ms_p50"] < frame.loc[1, "latency_ms_p50"]
    best, reason = choose_best(frame, accuracy_budget=1.0)
    assert list(frame["variant"][best]) == ["int8"]
    assert reason[best].item() == (
        "tie on latency with int8_pruned .pte xnnpack (indistinguishable p50s); "
        "chose the most accurate"
    )


def test_a_tie_at_equal_accuracy_goes_to_the_smaller_file():
    a = _samples(1.00, 0.2, seed=4)
    b = _samples(1.02, 0.2, seed=5)
    frame = pd.DataFrame(
        [
            _row("big", float(np.median(a)), 95.0, size=4000, samples=a),
            _row("small", float(np.median(b)), 95.0, size=1000, samples=b),
        ]
    )
    best, reason = choose_best(frame, accuracy_budget=1.0)
    assert list(frame["variant"][best]) == ["small"]
    assert reason[best].item().endswith("chose the smallest of the most accurate")


def test_run_to_run_spread_makes_a_tie_where_intervals_alone_do_not():
    # Tight samples within each process, but reruns of a benchmark move its p50 by 5 %:
    # a 4 % difference is then not a real one.
    fast = _samples(1.00, 0.005, seed=6)
    slow = _samples(1.04, 0.005, seed=7)
    rows = [_row("fast", 1.00, 94.5, samples=fast), _row("slow", 1.04, 95.0, samples=slow)]
    without = pd.DataFrame(rows)
    assert not indistinguishable(without.iloc[0], without.iloc[1])
    assert list(without["variant"][choose_best(without, 1.0)[0]]) == ["fast"]
    spread = pd.DataFrame([{**row, "latency_cv": 0.05} for row in rows])
    assert indistinguishable(spread.iloc[0], spread.iloc[1])
    assert list(spread["variant"][choose_best(spread, 1.0)[0]]) == ["slow"]
    # ... but not a 15 % difference.
    far = pd.DataFrame(
        [
            {**rows[0], "latency_cv": 0.05},
            {
                **rows[1],
                "latency_ms_p50": 1.15,
                "latency_cv": 0.05,
                "latency_ms_ci_low": 1.14,
                "latency_ms_ci_high": 1.16,
            },
        ]
    )
    assert list(far["variant"][choose_best(far, 1.0)[0]]) == ["fast"]


def test_over_budget_artifacts_are_never_best_however_fast():
    frame = pd.DataFrame(
        [
            _row("pruned", 0.5, 80.0, delta=-15.0, samples=_samples(0.5, 0.01)),
            _row("int8", 1.0, 94.5, delta=-0.5, samples=_samples(1.0, 0.01, seed=8)),
            _row("fp32", 3.0, 95.0, delta=0.0, samples=_samples(3.0, 0.01, seed=9)),
        ]
    )
    best, _ = choose_best(frame, accuracy_budget=1.0)
    assert list(frame["variant"][best]) == ["int8"]
    assert list(frame["variant"][choose_best(frame, accuracy_budget=20.0)[0]]) == ["pruned"]


def test_one_best_per_model_and_device():
    rows = [
        _row(v, p, 95.0, model=m, device=d, samples=_samples(p, 0.01, seed=i))
        for i, (m, d, v, p) in enumerate(
            [
                ("m", "host", "a", 1.0),
                ("m", "host", "b", 2.0),
                ("m", "phone", "a", 3.0),
                ("m", "phone", "b", 1.5),
                ("n", "host", "a", 1.0),
            ]
        )
    ]
    frame = pd.DataFrame(rows)
    best, _ = choose_best(frame, accuracy_budget=1.0)
    picked = frame[best]
    assert sorted(zip(picked["model"], picked["device"], picked["variant"], strict=True)) == [
        ("m", "host", "a"),
        ("m", "phone", "b"),
        ("n", "host", "a"),
    ]


@pytest.mark.parametrize("missing", ["latency_ms_ci_low", "latency_ms_ci_high"])
def test_rows_without_samples_are_compared_by_p50_alone(missing):
    a, b = _row("a", 1.0, 95.0, samples=[1.0]), _row("b", 1.0001, 96.0, samples=[1.0001])
    a[missing] = math.nan
    assert not indistinguishable(pd.Series(a), pd.Series(b))
