"""``selection.accuracy_budget``: whether an artifact's top-1 is within budget of its fp32
artifact's, defined once for every reader: ``best`` (:mod:`mobileforge.selection`), the paired
comparison's candidates (:mod:`mobileforge.bench.compare`), the report's faded points and the
prune search's verdicts (:mod:`mobileforge.stages.search`).

The reference is the fp32 artifact of the same model, format and backend; the budget is in top-1
points. An artifact without a measured accuracy (or without a reference) is not within.

Torch-free and dependency-free.
"""

from __future__ import annotations

import math


def accuracy_delta(accuracy: float | None, reference: float | None) -> float | None:
    """Top-1 of the artifact minus its fp32 artifact's, in points (None: one is unknown)."""
    if accuracy is None or reference is None:
        return None
    return float(accuracy) - float(reference)


def within(delta: object, budget: float) -> bool:
    """Whether an accuracy delta (points against fp32; None or NaN: unknown) is within
    ``budget`` points."""
    try:
        value = float(delta)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and value >= -budget
