"""Paired comparison: which artifact is faster, decided by timing them side by side.

Benchmarks of one artifact each, taken minutes apart, cannot decide which is faster on a shared
machine: load comes and goes, and lands on some of them and not on others (two artifacts running
identical kernels once read 39 % apart that way; interleaved, their ratio was 0.99). So the
candidates are held loaded, each in a process of its own pinned to the same CPUs, and timed in
**rounds**: every round gives each one turn (a fixed number of timed runs after a short
warm-up), in an order shuffled with a fixed seed, one process running at a time. Per round
each artifact's latency is the median of its turn; a ratio between two artifacts is computed
per round, and reported as its median over the rounds with a bootstrap interval (rounds
resampled, the same resamples for every pair).

* **A/A control**: one artifact is held twice, in two processes, and timed as two candidates.
  Its ratio is the measurement's own resolution: it must come out within
  ``1 ± aa_tolerance`` with an interval containing 1. Where it does not, another batch of rounds
  is run (at most ``max_batches`` in all, each reason recorded); still failing, the record says
  the comparison is not reliable, and nothing is decided from it.
* **Contention**: each turn measures the CPU other processes took on the pinned CPUs. A round in
  which any turn saw more than ``max_other_cpus`` is thrown away and run again (at most
  ``rounds`` times per batch); the record counts how many were.
* **A verdict** between two artifacts: faster only where the interval of their ratio lies below
  1 by more than the A/A control's own spread (:func:`verdict`); slower likewise; otherwise a tie.

Where the turns run is not this module's business (:class:`Turns`): host processes
(:mod:`mobileforge.bench.paired_host`) or anything else that can time one artifact for one turn.
Torch-free and numpy-free.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from mobileforge.bench.stats import percentile

#: The record's declared shape; readers check it (:func:`check_record`).
SCHEMA = "mobileforge.compare/1"
#: A progress line every this many rounds.
PROGRESS_EVERY = 5


@dataclass(frozen=True)
class Settings:
    """How a comparison is run (the workflow's ``compare`` config block)."""

    rounds: int = 20  # rounds per batch
    runs_per_turn: int = 20  # timed runs in one turn
    turn_warmup: int = 3  # untimed runs before each turn's timed ones
    warmup: int = 10  # untimed runs once, after loading
    seed: int = 0  # seed of the round orders and of the bootstrap
    max_other_cpus: float = 0.2  # other processes' CPU in a turn above which a round is redone
    max_batches: int = 3  # batches of rounds at most, while the A/A control fails
    aa_tolerance: float = 0.02  # the A/A ratio must be within 1 +- this
    confidence: float = 0.95
    resamples: int = 2000

    def __post_init__(self) -> None:
        for name in ("rounds", "runs_per_turn", "max_batches", "resamples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"compare.{name} must be >= 1, got {getattr(self, name)}")
        if self.turn_warmup < 0 or self.warmup < 0:
            raise ValueError("compare.turn_warmup and compare.warmup must be >= 0")


class Turns(Protocol):
    """Something that times artifact ``index`` for one turn (:mod:`.paired_host`)."""

    def turn(self, index: int, runs: int, turn_warmup: int) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Ratio:
    """Median over rounds of one artifact's latency over another's, with its interval."""

    ratio: float
    low: float
    high: float


def bootstrap_indices(rounds: int, settings: Settings) -> list[list[int]]:
    """The rounds each bootstrap resample takes (fixed seed: a record is reproducible)."""
    rng = random.Random(settings.seed)
    return [[rng.randrange(rounds) for _ in range(rounds)] for _ in range(settings.resamples)]


def ratio_of(
    numerator: Sequence[float],
    denominator: Sequence[float],
    resamples: list[list[int]],
    confidence: float,
) -> Ratio:
    """Per-round ratio ``numerator / denominator``: its median and bootstrap interval."""
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    medians = sorted(statistics.median(ratios[i] for i in chosen) for chosen in resamples)
    tail = (1.0 - confidence) / 2.0 * 100.0
    return Ratio(
        statistics.median(ratios), percentile(medians, tail), percentile(medians, 100.0 - tail)
    )


def control_check(control: Ratio, tolerance: float) -> str:
    """Why the A/A ratio fails (empty when it passes): within 1 +- tolerance, interval holds 1."""
    if abs(control.ratio - 1.0) > tolerance:
        return f"A/A ratio {control.ratio:.3f} is off 1 by more than {tolerance:g}"
    if not control.low <= 1.0 <= control.high:
        return f"A/A interval [{control.low:.3f}, {control.high:.3f}] does not contain 1"
    return ""


def resolution(control: dict[str, Any]) -> float:
    """The A/A control's own spread: how far its interval reaches from 1."""
    return max(0.0, 1.0 - control["ratio_low"], control["ratio_high"] - 1.0)


def verdict(pair: dict[str, Any], spread: float) -> str:
    """``faster``, ``slower`` or ``tie``: the artifact of ``pair`` against its reference."""
    if pair["ratio_high"] < 1.0 - spread:
        return "faster"
    if pair["ratio_low"] > 1.0 + spread:
        return "slower"
    return "tie"


def _run_round(
    turns: Turns, count: int, settings: Settings, rng: random.Random
) -> tuple[list[int], list[float], float | None]:
    """One round: its order, each artifact's median of its turn, the most other-CPU seen."""
    order = rng.sample(range(count), count)
    medians = [0.0] * count
    other: float | None = None
    for index in order:
        answer = turns.turn(index, settings.runs_per_turn, settings.turn_warmup)
        medians[index] = statistics.median(answer["samples_ms"])
        if answer.get("other_cpus") is not None:
            other = max(other or 0.0, float(answer["other_cpus"]))
    return order, medians, other


def run_comparison(
    turns: Turns,
    names: Sequence[str],
    control: tuple[int, int],
    settings: Settings,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time ``names`` (indices of ``turns``) in interleaved rounds; the comparison's record.

    ``control`` is the A/A pair: (original, copy) indices of one artifact held twice. Returns
    ``rounds`` (per kept round: order, per-artifact medians, other CPU), ``control`` and
    ``pairs`` (every ordered pair of distinct artifacts but the copy: ratio with interval),
    ``reliable`` and its reason, and how many rounds and batches it took.
    """
    count = len(names)
    rng = random.Random(settings.seed)
    kept: list[dict[str, Any]] = []
    repeated = kept_contended = 0
    batch_reasons: list[str] = []
    started = time.perf_counter()
    check = ""
    for batch in range(1, settings.max_batches + 1):
        retries = settings.rounds
        done = 0
        while done < settings.rounds:
            order, medians, other = _run_round(turns, count, settings, rng)
            contended = other is not None and other > settings.max_other_cpus
            if contended and retries > 0:
                retries -= 1
                repeated += 1
                time.sleep(min(0.5, 0.05 * (settings.rounds - retries)))  # let the load pass
                continue
            kept_contended += contended
            kept.append({"order": order, "median_ms": medians, "other_cpus": other})
            done += 1
            if done % PROGRESS_EVERY == 0 and done < settings.rounds:
                log(f"batch {batch}: round {done}/{settings.rounds} ({repeated} redone so far)")
        resamples = bootstrap_indices(len(kept), settings)
        column = [[r["median_ms"][i] for r in kept] for i in range(count)]
        aa = ratio_of(column[control[1]], column[control[0]], resamples, settings.confidence)
        check = control_check(aa, settings.aa_tolerance)
        log(
            f"batch {batch}: {len(kept)} rounds, A/A ratio {aa.ratio:.4f} "
            f"[{aa.low:.4f}, {aa.high:.4f}]{'; ' + check if check else ''}"
        )
        if not check:
            break
        batch_reasons.append(f"batch {batch}: {check}")
    measured = [i for i in range(count) if i != control[1]]
    pairs = []
    for i in measured:
        for j in measured:
            if i != j:
                ratio = ratio_of(column[i], column[j], resamples, settings.confidence)
                pairs.append(
                    {
                        "artifact": i,
                        "reference": j,
                        "ratio": ratio.ratio,
                        "ratio_low": ratio.low,
                        "ratio_high": ratio.high,
                    }  # fmt: skip
                )
    return {
        "schema": SCHEMA,
        "settings": asdict(settings),
        "names": list(names),
        "median_ms": [statistics.median(values) for values in column],
        "control": {
            "original": control[0],
            "copy": control[1],
            "ratio": aa.ratio,
            "ratio_low": aa.low,
            "ratio_high": aa.high,
            "ok": not check,
        },
        "reliable": not check,
        "unreliable_reason": check,
        "pairs": pairs,
        "batches": len(batch_reasons) + (0 if check else 1),
        "batch_reasons": batch_reasons,
        "rounds_kept": len(kept),
        "rounds_repeated_for_contention": repeated,
        "rounds_kept_contended": kept_contended,
        "rounds": kept,
        "wall_s": time.perf_counter() - started,
    }


#: Keys every comparison record has; a reader that misses one fails here, by name.
RECORD_KEYS = (
    "schema", "settings", "names", "median_ms", "control", "reliable", "unreliable_reason",
    "pairs", "batches", "batch_reasons", "rounds_kept", "rounds_repeated_for_contention",
    "rounds_kept_contended", "rounds", "wall_s",
)  # fmt: skip


def check_record(record: dict[str, Any], where: str) -> dict[str, Any]:
    """``record`` if it has the declared shape, else a ValueError naming ``where`` and the key."""
    if record.get("schema") != SCHEMA:
        raise ValueError(f"{where}: not a {SCHEMA} record (schema {record.get('schema')!r})")
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        raise ValueError(f"{where}: comparison record lacks {', '.join(missing)}")
    return record


def pair(record: dict[str, Any], artifact: int, reference: int) -> dict[str, Any]:
    """The ratio entry of ``artifact`` over ``reference`` (indices into ``names``)."""
    for entry in record["pairs"]:
        if entry["artifact"] == artifact and entry["reference"] == reference:
            return entry
    raise KeyError(f"no ratio of artifact {artifact} over {reference} in the comparison")


def over_first(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Per artifact (the A/A copy left out), its latency over the first artifact's: ``ratio``,
    ``ratio_low``, ``ratio_high`` and ``verdict`` (``reference`` for the first, ``undecided``
    everywhere when the A/A control failed)."""
    spread = resolution(record["control"])
    rows = []
    for index in range(len(record["names"])):
        if index == record["control"]["copy"]:
            continue
        if index == 0:
            rows.append({"ratio": 1.0, "ratio_low": 1.0, "ratio_high": 1.0, "verdict": "reference"})
            continue
        entry = pair(record, index, 0)
        said = verdict(entry, spread) if record["reliable"] else "undecided"
        rows.append({key: entry[key] for key in ("ratio", "ratio_low", "ratio_high")}
                    | {"verdict": said})  # fmt: skip
    return rows
