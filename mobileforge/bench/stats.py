"""Latency statistics shared by every benchmark (host and device).

Kept free of torch, and of numpy: a phone benchmark job imports this and nothing else numeric,
and numpy's import (0.1-0.15 s here) would be a good part of such a job's own cost.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

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
    arr = sorted(values)
    n = len(arr)
    k = int(math.floor(n * TRIM_FRACTION))
    trimmed = arr[k : n - k]
    return {
        "count": n,
        "min": arr[0],
        "max": arr[-1],
        "mean": statistics.fmean(arr),
        "std": statistics.pstdev(arr),
        "p50": percentile(arr, 50),
        "p90": percentile(arr, 90),
        "p99": percentile(arr, 99),
        "trimmed_mean": statistics.fmean(trimmed),
    }


def percentile(ordered: Sequence[float], q: float) -> float:
    """numpy's default percentile of sorted values: linear interpolation between the closest
    ranks."""
    # Not statistics.quantiles(method="inclusive"): it interpolates the same ranks but computes
    # (a * (n - d) + b * d) / n, which differs from a + (b - a) * f in the last bits for about
    # 40 % of p50/p90/p99 values of random samples, and it refuses a single sample. Recorded
    # latencies keep this arithmetic.
    position = (len(ordered) - 1) * q / 100.0
    lo = math.floor(position)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (position - lo)


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
        key: float(statistics.median(float(run[key]) for run in runs)) for key in _MEDIAN_OF
    }
    p50s = [float(run["p50"]) for run in runs]
    combined["min"] = float(min(float(run["min"]) for run in runs))
    combined["max"] = float(max(float(run["max"]) for run in runs))
    combined["count"] = int(sum(int(run["count"]) for run in runs))
    combined["runs"] = len(runs)
    combined["p50_runs"] = p50s  # type: ignore[assignment]
    mean = statistics.fmean(p50s)
    combined["cv"] = statistics.stdev(p50s) / mean if len(runs) > 1 and mean > 0 else None
    return combined


def benchmark_samples(record: dict[str, Any]) -> list[float]:
    """Every timed run's latency in a benchmark record (host or phone): its repeats'
    ``runs[*].samples_ms``, in order.

    Raises ``KeyError`` naming the record when that shape is not there: the summary's intervals
    and the report's distributions read this, and a record that changed shape must stop them,
    not leave their columns quietly empty.
    """
    where = f"benchmark record of {record.get('artifact')} on {record.get('device')}"
    runs = record.get("runs")
    if not isinstance(runs, list) or not runs:
        raise KeyError(f"{where} has no 'runs' list (per-process results)")
    missing = [i for i, run in enumerate(runs) if "samples_ms" not in run]
    if missing:
        raise KeyError(f"{where}: runs {missing} have no 'samples_ms'")
    return [float(sample) for run in runs for sample in run["samples_ms"]]
