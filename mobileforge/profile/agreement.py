"""A profile checked against the artifact's benchmark: do the per-layer times add up to the
end-to-end p50, and if not, is the difference time the profile saw outside operators?"""

from __future__ import annotations

from typing import Any

#: How far the per-layer sum (or, with the time outside operators, the profiled end-to-end time)
#: may be from the benchmark's p50 and still agree.
TOLERANCE = 0.2


def agreement(
    layers_ms: float,
    end_to_end_ms: float | None,
    benchmark_p50_ms: float | None,
    overhead_ms: float | None = None,
) -> dict[str, Any]:
    """``coverage``, ``agrees``, ``outside_ms`` and the ``agreement`` sentence of a profile.

    The layers agree when their sum is within :data:`TOLERANCE` of the p50. Otherwise the
    difference is named when the profiled run's own end-to-end time (layers plus time outside
    operators: the runtime's dispatch, the Python call, input copies) is within it, or, with the
    profiler's own cost per run measured in the same process (``overhead_ms``), when the
    unprofiled runs there are: the layers' times then hold that cost.
    """
    outside = None if end_to_end_ms is None else end_to_end_ms - layers_ms
    if benchmark_p50_ms is None or benchmark_p50_ms <= 0:
        return {
            "coverage": None,
            "agrees": None,
            "outside_ms": outside,
            "agreement": "no benchmark p50 to compare with",
        }
    coverage = layers_ms / benchmark_p50_ms
    head = (
        f"per-layer sum {layers_ms:.3f} ms is {coverage:.0%} of the benchmark's p50 "
        f"{benchmark_p50_ms:.3f} ms"
    )
    if abs(coverage - 1) <= TOLERANCE:
        return {"coverage": coverage, "agrees": True, "outside_ms": outside,
                "agreement": f"{head}: within {TOLERANCE:.0%}"}  # fmt: skip
    if end_to_end_ms is not None and abs(end_to_end_ms / benchmark_p50_ms - 1) <= TOLERANCE:
        return {
            "coverage": coverage,
            "agrees": True,
            "outside_ms": outside,
            "agreement": (
                f"{head}; the other {outside:.3f} ms is time outside operators (the profiled "
                f"run took {end_to_end_ms:.3f} ms end to end, "
                f"{end_to_end_ms / benchmark_p50_ms:.0%} of the p50)"
            ),
        }
    if overhead_ms is not None and end_to_end_ms is not None:
        unprofiled = end_to_end_ms - overhead_ms
        if abs(unprofiled / benchmark_p50_ms - 1) <= TOLERANCE:
            return {
                "coverage": coverage,
                "agrees": True,
                "outside_ms": outside,
                "agreement": (
                    f"{head}; the profiler added {overhead_ms:.3f} ms per run (profiled runs "
                    f"{end_to_end_ms:.3f} ms, unprofiled {unprofiled:.3f} ms = "
                    f"{unprofiled / benchmark_p50_ms:.0%} of the p50, same process): the "
                    "layers' times hold it, most in layers of many small calls"
                ),
            }
    tail = (
        ""
        if end_to_end_ms is None
        else f"; the profiled run itself took {end_to_end_ms:.3f} ms end to end "
        f"({end_to_end_ms / benchmark_p50_ms:.0%} of the p50: profiler overhead or a busier "
        "machine than the benchmark's)"
    )
    return {"coverage": coverage, "agrees": False, "outside_ms": outside,
            "agreement": f"{head}, outside {TOLERANCE:.0%}{tail}"}  # fmt: skip
