"""``prune.amount: search``: which channel amounts a bisection tries, from the verdicts so far.

The amounts lie on a grid (multiples of ``prune.search.step``) between ``low`` and ``high``, so a
tried amount is always the same point (``channel-0.6``), cached as its own branch of the DAG.
The first amount is the grid midpoint of [low, high]; each verdict (the point's int8 artifacts
within ``selection.accuracy_budget`` of fp32, or not) halves what is left: within, the search
goes higher; over, lower. It assumes accuracy falls as the amount grows. It stops after
``max_points`` amounts, or when no untried grid point is left between the largest amount within
the budget and the smallest over it; the answer is that largest amount within (None: even
``low`` was over the budget, or the search stopped before finding one).

Pure and torch-free: the plan walks it while the DAG is built (rules/common.smk reads each
verdict through the ``prune_search_step`` checkpoint), the search jobs write its records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: ``prune.amount`` that asks for a search instead of given amounts.
SEARCH = "search"
#: Grid positions are compared to this many decimals (0.05 * 12 is 0.6000000000000001).
DECIMALS = 9

#: (amount, within the budget) of each amount tried, in the order tried.
History = Sequence[tuple[float, bool]]
#: A tried amount's verdict, None while it is not known (the DAG has not built it yet).
Verdict = Callable[[float], bool | None]


@dataclass(frozen=True)
class Search:
    """The settings of one model's search (``prune.search``)."""

    low: float
    high: float
    step: float
    max_points: int

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> Search:
        return cls(
            float(settings["low"]),
            float(settings["high"]),
            float(settings["step"]),
            int(settings["max_points"]),
        )

    def index(self, amount: float) -> int | None:
        """The grid position of ``amount`` (a multiple of ``step``), None when it is off-grid."""
        position = round(amount / self.step)
        return position if abs(position * self.step - amount) < 10**-DECIMALS else None

    def amount(self, index: int) -> float:
        return round(index * self.step, DECIMALS)

    @property
    def bounds(self) -> tuple[int, int]:
        """Grid positions of ``low`` and ``high`` (both tried if the verdicts lead there)."""
        low, high = self.index(self.low), self.index(self.high)
        if low is None or high is None:
            raise ValueError(self.problem())
        return low, high

    def problem(self) -> str | None:
        """Why these settings cannot be searched (None: they can)."""
        if self.index(self.low) is None or self.index(self.high) is None:
            return (
                f"low {self.low:g} and high {self.high:g} must be multiples of step {self.step:g}"
            )
        if self.low > self.high:
            return f"low {self.low:g} is above high {self.high:g}"
        return None

    def contains(self, amount: float) -> bool:
        """Whether ``amount`` is a grid point between low and high (one the search may try)."""
        index = self.index(amount)
        low, high = self.bounds
        return index is not None and low <= index <= high


def interval(search: Search, history: History) -> tuple[int, int]:
    """(largest grid position known within the budget, smallest known over it), with the
    position below ``low`` and above ``high`` standing for none known: the untried points still
    possible lie strictly between them."""
    low, high = search.bounds
    within, over = low - 1, high + 1
    for amount, ok in history:
        index = search.index(amount)
        if index is None:
            raise ValueError(f"{amount:g} is not a multiple of step {search.step:g}")
        if ok:
            within = max(within, index)
        else:
            over = min(over, index)
    return within, over


def remaining(search: Search, history: History) -> tuple[float, float] | None:
    """The untried amounts still possible after ``history``: [lowest, highest], None if none."""
    within, over = interval(search, history)
    if over - within <= 1:
        return None
    return search.amount(within + 1), search.amount(over - 1)


def next_amount(search: Search, history: History) -> float | None:
    """The amount to try after ``history`` (the grid midpoint of what is left, rounded down),
    None when the search is over (:func:`stopped`)."""
    if stopped(search, history) is not None:
        return None
    within, over = interval(search, history)
    return search.amount((within + over) // 2)


def stopped(search: Search, history: History) -> str | None:
    """Why the search is over after ``history``, None while it goes on."""
    within, over = interval(search, history)
    if over - within <= 1:
        if within < search.bounds[0]:
            return f"even the lowest amount, {search.low:g}, is over the budget"
        if over > search.bounds[1]:
            return f"even the highest amount, {search.high:g}, is within the budget"
        return (
            f"no untried amount is left between {search.amount(within):g} (within the budget) "
            f"and {search.amount(over):g} (over it)"
        )
    if len(history) >= search.max_points:
        return f"max_points ({search.max_points}) amounts tried"
    return None


def best(search: Search, history: History) -> float | None:
    """The largest amount tried that stayed within the budget (None: none did)."""
    within, _ = interval(search, history)
    return search.amount(within) if within >= search.bounds[0] else None


def tried(search: Search, verdict: Verdict) -> list[float]:
    """The amounts the search tries, in order, as far as ``verdict`` knows them: every amount
    with a verdict, then the first without one (the next to build), if the search goes on."""
    history: list[tuple[float, bool]] = []
    amounts = []
    while (amount := next_amount(search, history)) is not None:
        amounts.append(amount)
        ok = verdict(amount)
        if ok is None:
            break
        history.append((amount, ok))
    return amounts


def history_before(search: Search, amount: float, verdict: Verdict) -> list[tuple[float, bool]]:
    """The amounts tried before ``amount`` and their verdicts; ValueError if the search, led by
    ``verdict``, does not try ``amount`` (or a verdict it needs is not known)."""
    history: list[tuple[float, bool]] = []
    while (found := next_amount(search, history)) is not None:
        if found == amount:
            return history
        ok = verdict(found)
        if ok is None:
            break
        history.append((found, ok))
    path = ", ".join(f"{a:g}" for a, _ in history) or "none yet"
    raise ValueError(f"the search does not try {amount:g} (amounts tried: {path})")
