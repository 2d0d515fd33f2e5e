"""Comparison records for tests, from the real round logic over a scripted clock.

:class:`ScriptedTurns` answers each turn with latencies it is told (plus seeded noise, plus
contention where asked), so :func:`mobileforge.bench.compare.run_comparison` runs exactly as it
does over real processes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from mobileforge.bench import compare


class ScriptedTurns:
    """Turns of artifacts with fixed latencies: ``latency_ms[i] * (1 + noise)`` per run.

    ``contended(turn_number)`` says how much other CPU a turn saw (0 by default).
    """

    def __init__(
        self,
        latency_ms: list[float],
        noise: float = 0.01,
        seed: int = 0,
        contended: Callable[[int], float] | None = None,
    ) -> None:
        self.latency_ms = latency_ms
        self.noise = noise
        self.rng = random.Random(seed)
        self.contended = contended or (lambda turn: 0.0)
        self.turns = 0

    def turn(self, index: int, runs: int, turn_warmup: int) -> dict[str, Any]:
        self.turns += 1
        other = self.contended(self.turns)
        slow = 1.0 + other  # a shared CPU stretches the turn
        samples = [
            self.latency_ms[index] * slow * (1.0 + self.rng.gauss(0.0, self.noise))
            for _ in range(runs)
        ]
        return {"samples_ms": samples, "other_cpus": other}


def record_of(
    rows: list[dict[str, Any]],
    latency_ms: list[float],
    copy_latency_ms: float | None = None,
    settings: compare.Settings | None = None,
) -> dict[str, Any]:
    """A comparison record as the compare job writes it: ``rows`` (path, variant, format,
    backend, ...) timed at ``latency_ms``, the first also held twice (its copy at
    ``copy_latency_ms``, by default the same latency)."""
    settings = settings or compare.Settings(rounds=9, runs_per_turn=5, resamples=300)
    copy = latency_ms[0] if copy_latency_ms is None else copy_latency_ms
    turns = ScriptedTurns([*latency_ms, copy])
    names = [row["path"] for row in rows] + ["copy"]
    record = compare.run_comparison(turns, names, (0, len(rows)), settings, log=lambda _: None)
    record["artifacts"] = [
        {**row, **ratio} for row, ratio in zip(rows, compare.over_first(record), strict=True)
    ]
    return record
