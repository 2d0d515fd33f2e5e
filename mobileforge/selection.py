"""Which artifacts are worth shipping: the Pareto front, and a ``best`` decided by paired timing.

Per model and device, over the rows of :mod:`mobileforge.summary`:

* ``pareto``: no other artifact of that model on that device is at least as fast and at least as
  accurate, and strictly better in one of the two (p50 latency, top-1 of the artifact itself).
* ``best``: decided from the model's paired comparison on that device
  (:mod:`mobileforge.bench.compare`), never from benchmarks taken apart. Among the candidates
  within ``selection.accuracy_budget`` top-1 points of fp32, the fastest by median ratio is
  taken, and every candidate it is not *faster* than (the interval of their ratio does not lie
  below 1 by more than the A/A control's own spread) ties with it. Of those the most accurate
  wins, then the smallest file, then the simpler artifact (unpruned before pruned), then the
  lower median. ``best_reason`` says which rule decided, with the ratio. A comparison whose
  A/A control failed decides nothing; a device without a comparison has no ``best``.

Torch-free (numpy and pandas): the summary job runs it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mobileforge import budget
from mobileforge.bench import compare

#: Resamples of the bootstrap interval of the median; fixed seed, so a summary is reproducible.
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


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


def choose_best(
    frame: pd.DataFrame,
    comparisons: dict[tuple[str, str], dict[str, Any]],
    accuracy_budget: float,
) -> tuple[pd.Series, pd.Series]:
    """``best`` (one row per model and device with a reliable comparison and a candidate) and
    its ``best_reason`` (module docstring)."""
    best = pd.Series(False, index=frame.index)
    reason = pd.Series("", index=frame.index, dtype=object)
    for (model, device), group in frame.groupby(["model", "device"]):
        record = comparisons.get((model, device))
        if record is None or not record["reliable"]:
            continue
        position = {row["path"]: i for i, row in enumerate(record["artifacts"])}
        eligible = group[
            [
                path in position and budget.within(delta, accuracy_budget)
                for path, delta in zip(group["artifact"], group["accuracy_delta"], strict=True)
            ]
        ]
        if eligible.empty:
            continue
        at = {index: position[path] for index, path in eligible["artifact"].items()}
        ratio = {index: record["artifacts"][i]["ratio"] for index, i in at.items()}
        fastest = min(at, key=lambda index: (ratio[index], index))
        spread = compare.resolution(record["control"])
        tied = [
            index
            for index in at
            if index == fastest
            or compare.verdict(compare.pair(record, at[fastest], at[index]), spread) != "faster"
        ]
        pick = min(
            tied,
            key=lambda index: (
                -_number(frame.loc[index, "accuracy"]),
                int(frame.loc[index, "size_bytes"]),
                _pruned(frame.loc[index, "variant"]),
                ratio[index],
            ),
        )
        best[pick] = True
        reason[pick] = _reason(frame, record, at, pick, fastest, tied, spread)
    return best, reason


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _pruned(variant: str) -> bool:
    return "pruned" in str(variant)


def _times(entry: dict[str, Any]) -> str:
    return f"{entry['ratio']:.3g}x [{entry['ratio_low']:.3g}, {entry['ratio_high']:.3g}]"


def _reason(
    frame: pd.DataFrame,
    record: dict[str, Any],
    at: dict[Any, int],
    pick: Any,
    fastest: Any,
    tied: list[Any],
    spread: float,
) -> str:
    resolution = f"A/A resolution ±{spread:.1%}"
    if len(tied) == 1:
        others = [index for index in at if index != pick]
        if not others:
            return "the only compared artifact within the accuracy budget"
        runner_up = min(others, key=lambda index: record["artifacts"][at[index]]["ratio"])
        entry = compare.pair(record, at[runner_up], at[pick])
        return (
            f"fastest (paired): the next, {label(frame.loc[runner_up])}, takes {_times(entry)} "
            f"its time, beyond the {resolution}"
        )
    others = [index for index in tied if index != pick]
    names = ", ".join(
        f"{label(frame.loc[index])} ({_times(compare.pair(record, at[index], at[pick]))})"
        for index in others
    )
    accuracy = _number(frame.loc[pick, "accuracy"])
    as_accurate = [index for index in others if _number(frame.loc[index, "accuracy"]) >= accuracy]
    if not as_accurate:
        why = "chose the most accurate"
    elif int(frame.loc[pick, "size_bytes"]) < min(
        int(frame.loc[index, "size_bytes"]) for index in as_accurate
    ):
        why = "chose the smallest of the most accurate"
    elif not _pruned(frame.loc[pick, "variant"]) and any(
        _pruned(frame.loc[index, "variant"]) for index in as_accurate
    ):
        why = "as accurate and as small: chose the unpruned artifact"
    else:
        why = "as accurate and as small: chose the lower median"
    return f"tie on latency with {names}, within the {resolution}; {why}"
