"""Which artifacts are worth shipping: the Pareto front and a ``best`` that noise cannot decide.

Per model and device, over the rows of :mod:`mobileforge.summary`:

* ``pareto``: no other artifact of that model on that device is at least as fast and at least as
  accurate, and strictly better in one of the two (p50 latency, top-1 of the artifact itself).
* ``best``: among the artifacts within ``selection.accuracy_budget`` top-1 points of fp32, the
  fastest by p50, unless its latency cannot be told apart from other candidates'. Two latencies
  are *indistinguishable* when the 95 % bootstrap intervals of their medians overlap, or, where a
  benchmark measured its run-to-run spread (``latency_cv``, the coefficient of variation of
  the p50 over repeated processes), when their p50s differ by less than two of those spreads.
  The fastest and every candidate indistinguishable from it tie; of those the most accurate
  wins, then the smallest file, then the lower p50. ``best_reason`` says which rule decided.

Torch-free (numpy and pandas): the summary job runs it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Resamples of the bootstrap interval of the median; fixed seed, so a summary is reproducible.
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
#: Latencies closer than this many run-to-run standard deviations (CV x p50) are a tie.
RUN_SPREADS = 2.0


def median_interval(
    samples: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``samples`` (NaNs when there are none)."""
    values = np.asarray([float(v) for v in samples], dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, size=(resamples, values.size), replace=True), axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(medians, [tail, 100.0 - tail])
    return float(low), float(high)


def _number(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return number


def indistinguishable(a: pd.Series, b: pd.Series) -> bool:
    """Whether the latencies of rows ``a`` and ``b`` cannot be told apart (module docstring)."""
    low_a, high_a = _number(a["latency_ms_ci_low"]), _number(a["latency_ms_ci_high"])
    low_b, high_b = _number(b["latency_ms_ci_low"]), _number(b["latency_ms_ci_high"])
    if not any(math.isnan(v) for v in (low_a, high_a, low_b, high_b)):
        if low_a <= high_b and low_b <= high_a:
            return True
    spreads = [_number(row.get("latency_cv")) for row in (a, b)]
    spreads = [s for s in spreads if not math.isnan(s)]
    if spreads:
        p50_a, p50_b = _number(a["latency_ms_p50"]), _number(b["latency_ms_p50"])
        return abs(p50_a - p50_b) < RUN_SPREADS * max(spreads) * min(p50_a, p50_b)
    return False


def pareto_front(frame: pd.DataFrame) -> pd.Series:
    """``pareto`` per row: on the latency-accuracy front of its model and device."""
    front = pd.Series(False, index=frame.index)
    measured = frame[frame["latency_ms_p50"].notna() & frame["accuracy"].notna()]
    for _, group in measured.groupby(["model", "device"]):
        p50 = group["latency_ms_p50"].astype(float).to_numpy()
        accuracy = group["accuracy"].astype(float).to_numpy()
        for position, index in enumerate(group.index):
            no_slower = p50 <= p50[position]
            no_worse = accuracy >= accuracy[position]
            better = (p50 < p50[position]) | (accuracy > accuracy[position])
            front[index] = not bool(np.any(no_slower & no_worse & better))
    return front


def label(row: pd.Series) -> str:
    """Short name of an artifact within its model: ``int8 .pte xnnpack``, ``int8 .ptl cpu x86``."""
    engine = row.get("engine")
    engine = engine if isinstance(engine, str) and engine else ""
    return " ".join(
        part for part in (row["variant"], f".{row['format']}", row["backend"], engine) if part
    )


def choose_best(frame: pd.DataFrame, accuracy_budget: float) -> tuple[pd.Series, pd.Series]:
    """``best`` (one row per model and device with a candidate) and its ``best_reason``."""
    best = pd.Series(False, index=frame.index)
    reason = pd.Series("", index=frame.index, dtype=object)
    eligible = frame[
        frame["latency_ms_p50"].notna() & (frame["accuracy_delta"] >= -accuracy_budget)
    ]
    for _, group in eligible.groupby(["model", "device"]):
        ordered = group.sort_values("latency_ms_p50", kind="stable")
        fastest = ordered.iloc[0]
        tied = ordered[
            [
                index == fastest.name or indistinguishable(fastest, row)
                for index, row in ordered.iterrows()
            ]
        ]
        pick = tied.sort_values(
            ["accuracy", "size_bytes", "latency_ms_p50"],
            ascending=[False, True, True],
            kind="stable",
        ).iloc[0]
        best[pick.name] = True
        reason[pick.name] = _reason(pick, fastest, tied, ordered)
    return best, reason


def _reason(pick: pd.Series, fastest: pd.Series, tied: pd.DataFrame, ordered: pd.DataFrame) -> str:
    if len(tied) == 1:
        if len(ordered) == 1:
            return "fastest: the only artifact within the accuracy budget"
        runner_up = ordered.iloc[1]
        return (
            f"fastest; the next, {label(runner_up)} at {runner_up['latency_ms_p50']:.3g} ms, "
            "is distinguishable"
        )
    others = tied.drop(pick.name)
    names = ", ".join(label(row) for _, row in others.iterrows())
    as_accurate = others[others["accuracy"].astype(float) >= float(pick["accuracy"])]
    if as_accurate.empty:
        why = "chose the most accurate"
    elif int(pick["size_bytes"]) < int(as_accurate["size_bytes"].min()):
        why = "chose the smallest of the most accurate"
    else:
        why = "as accurate and as small: chose the lowest p50"
    return f"tie on latency with {names} (indistinguishable p50s); {why}"
