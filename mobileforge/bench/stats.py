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
