"""Latency statistics shared by every benchmark (host and device).

Kept free of torch so summarising device results on the host costs nothing: the adb path
parses microsecond strings and never needs a runtime.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Fraction dropped from each end for ``trimmed_mean``; ExecuTorch's Android benchmark app
#: (``ModelRunner.kt``) reports the mean of the middle 80 % of sorted samples.
TRIM_FRACTION = 0.1


def summarize_latencies(samples_ms: Sequence[float]) -> dict[str, float | int]:
    """Summarise per-iteration latencies in milliseconds.

    Returns ``count, min, max, mean, std, p50, p90, p99, trimmed_mean``.

    * ``std`` is the population standard deviation (ddof=0), as TFLite's ``benchmark_model``
      reports it, so a single sample gives 0 rather than NaN.
    * Percentiles use linear interpolation between closest ranks (numpy's default), so p99 of a
      short run is an interpolation, not an observed sample.
    * ``trimmed_mean`` sorts the samples and drops ``floor(n * 0.1)`` from each end (the same
      slice as ExecuTorch's app when n is a multiple of 10; symmetric otherwise). With fewer
      than 10 samples nothing is dropped.

    Raises ``ValueError`` on an empty list or a non-finite/negative sample: a benchmark that
    produced no numbers, or nonsense ones, must fail loudly instead of writing zeros.
    """
    values = [float(v) for v in samples_ms]
    if not values:
        raise ValueError("no latency samples to summarize")
    bad = [v for v in values if not math.isfinite(v) or v < 0]
    if bad:
        raise ValueError(f"latency samples must be finite and >= 0, got {bad[:5]}")
    arr = np.sort(np.asarray(values, dtype=np.float64))
    n = int(arr.size)
    k = int(math.floor(n * TRIM_FRACTION))
    trimmed = arr[k : n - k]
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "count": n,
        "min": float(arr[0]),
        "max": float(arr[-1]),
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=0)),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "trimmed_mean": float(trimmed.mean()),
    }


#: Per-run statistics whose median over the runs is reported.
_MEDIAN_OF = ("p50", "p90", "p99", "mean", "std", "trimmed_mean")


def combine_runs(runs: Sequence[dict[str, float | int]]) -> dict[str, float | int | None]:
    """Combine the :func:`summarize_latencies` of ``runs`` fresh processes of one benchmark.

    One process's numbers depend on where its memory landed, which cores and clocks it got and
    what else ran: rerunning the same benchmark moved its p50 by 3-7 % here. So each statistic
    is the median over the runs of that run's statistic (``p50`` is the median of the medians),
    ``min``/``max``/``count`` cover every sample, and the spread between runs is reported:

    * ``cv``: the run-to-run coefficient of variation of the per-run p50s (sample standard
      deviation over mean); None for a single run, which cannot show its own spread;
    * ``runs``: how many processes; ``p50_runs``: each run's p50, in order.
    """
    if not runs:
        raise ValueError("no runs to combine")
    combined: dict[str, float | int | None] = {
        key: float(np.median([float(run[key]) for run in runs])) for key in _MEDIAN_OF
    }
    p50s = np.asarray([float(run["p50"]) for run in runs])
    combined["min"] = float(min(float(run["min"]) for run in runs))
    combined["max"] = float(max(float(run["max"]) for run in runs))
    combined["count"] = int(sum(int(run["count"]) for run in runs))
    combined["runs"] = len(runs)
    combined["p50_runs"] = [float(p) for p in p50s]  # type: ignore[assignment]
    mean = float(p50s.mean())
    combined["cv"] = float(p50s.std(ddof=1) / mean) if len(runs) > 1 and mean > 0 else None
    return combined
