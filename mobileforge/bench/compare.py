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
* **Contention**: each turn measures the CPU other processes took from it (how long it waited,
  runnable, for its CPU), and where the turns can tell (:class:`.host.paired.RoundLoad`) each
  round also measures the hypervisor's steal on the pinned CPUs and how busy the CPUs sharing
  their last-level cache were. A round in which any turn lost more than ``max_other_cpus`` of a
  CPU, or steal exceeded it, or the cache neighbours were busier than ``max_neighbour_load``,
  is thrown away and run again after a pause that grows while contention lasts (at most
  ``RETRIES_PER_ROUND x rounds`` times per batch); the record counts how many were, and any
  contended round kept once that bound was reached.
* **A verdict** between two artifacts: faster only where the interval of their ratio lies below
  1 by more than the A/A control's own spread (:func:`verdict`); slower likewise; otherwise a tie.

Where the turns run is not this module's business (:class:`Turns`): host processes
(:mod:`mobileforge.bench.host.paired`) or anything else that can time one artifact for one turn.
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
from mobileforge.budget import accuracy_delta
from mobileforge.budget import within as budget_within

#: The record's declared shape; readers check it (:func:`check_record`).
SCHEMA = "mobileforge.compare/1"
#: A progress line every this many rounds.
PROGRESS_EVERY = 5
#: Contended rounds redone per batch, at most, per round asked for.
RETRIES_PER_ROUND = 2


@dataclass(frozen=True)
class Settings:
    """How a comparison is run (the workflow's ``compare`` config block)."""

    rounds: int = 40  # rounds per batch
    runs_per_turn: int = 10  # timed runs in one turn
    turn_warmup: int = 3  # untimed runs before each turn's timed ones
    warmup: int = 10  # untimed runs once, after loading
    processes: int = 3  # processes holding each artifact, taking turns round by round
    seed: int = 0  # seed of the round orders and of the bootstrap
    max_other_cpus: float = 0.05  # CPU others took from a turn above which its round is redone
    max_neighbour_load: float = 0.25  # load of the CPUs sharing the cache, likewise
    max_batches: int = 3  # batches of rounds at most, while the A/A control fails
    aa_tolerance: float = 0.02  # the A/A ratio must be within 1 +- this
    confidence: float = 0.95
    resamples: int = 2000

    def __post_init__(self) -> None:
        for name in ("rounds", "runs_per_turn", "max_batches", "resamples", "processes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"compare.{name} must be >= 1, got {getattr(self, name)}")
        if self.turn_warmup < 0 or self.warmup < 0:
            raise ValueError("compare.turn_warmup and compare.warmup must be >= 0")


#: Reference variants of each format, timed in every comparison whatever their accuracy, in
#: this order; the first one there is also timed twice, as the A/A control.
REFERENCES = (("pte", "int8"), ("pte", "fp32"), ("ptl", "int8"), ("ptl", "fp32"))


def candidates(
    sidecars: dict[str, dict[str, Any]], accuracy: dict[str, float], budget: float
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Which of a model's artifacts (``sidecars`` by path) a comparison times, references first.

    Every artifact within ``budget`` top-1 points (``accuracy`` by path) of the fp32 artifact of
    its format and backend, plus the :data:`REFERENCES` whatever their accuracy. Returns the
    entries (path, role, variant, format, backend, engine, accuracy, accuracy_delta,
    within_budget, size_bytes) and, for the artifacts left out, why.
    """
    fp32 = {(s["format"], s["backend"]): accuracy.get(path)
            for path, s in sidecars.items() if s["variant"] == "fp32"}  # fmt: skip
    entries, left_out = [], {}
    for path, sidecar in sidecars.items():
        reference = fp32.get((sidecar["format"], sidecar["backend"]))
        own = accuracy.get(path)
        delta = accuracy_delta(own, reference)
        within = budget_within(delta, budget)
        role = "reference" if (sidecar["format"], sidecar["variant"]) in REFERENCES else "candidate"
        if role == "candidate" and not within:
            left_out[path] = (
                "no accuracy measured" if delta is None
                else f"top-1 {delta:+.2f} points against fp32, budget {budget:g}"
            )  # fmt: skip
            continue
        entries.append(
            {
                "path": path,
                "role": role,
                "model": sidecar["model"],
                "variant": sidecar["variant"],
                "format": sidecar["format"],
                "backend": sidecar["backend"],
                "engine": sidecar.get("engine"),
                "accuracy": own,
                "accuracy_delta": delta,
                "within_budget": within,
                "size_bytes": sidecar["size_bytes"],
            }  # fmt: skip
        )
    rank = {key: index for index, key in enumerate(REFERENCES)}
    entries.sort(key=lambda e: (rank.get((e["format"], e["variant"]), len(rank)), e["path"]))
    return entries, left_out


class Turns(Protocol):
    """Something that times artifact ``index`` for one turn (:mod:`.host.paired`)."""

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


def _run_round(turns: Turns, count: int, settings: Settings, rng: random.Random) -> dict[str, Any]:
    """One round: its order, each artifact's median of its turn, the most CPU any turn lost to
    other processes, and (where ``turns`` can tell) steal and the cache neighbours' load."""
    order = rng.sample(range(count), count)
    medians = [0.0] * count
    other: float | None = None
    probe = turns.round_load() if hasattr(turns, "round_load") else None
    if probe is not None:
        probe.start()
    for index in order:
        answer = turns.turn(index, settings.runs_per_turn, settings.turn_warmup)
        medians[index] = statistics.median(answer["samples_ms"])
        if answer.get("other_cpus") is not None:
            other = max(other or 0.0, float(answer["other_cpus"]))
    load = probe.stop() if probe is not None else {"steal": None, "neighbours": None}
    return {"order": order, "median_ms": medians, "other_cpus": other, **load}


def _contended(measured: dict[str, Any], settings: Settings) -> bool:
    """Whether other work took more than the settings allow during a round (None: unknown)."""
    limits = {"other_cpus": settings.max_other_cpus, "steal": settings.max_other_cpus,
              "neighbours": settings.max_neighbour_load}  # fmt: skip
    return any(measured[key] is not None and measured[key] > limit for key, limit in limits.items())


def _run_batch(
    turns: Turns,
    count: int,
    settings: Settings,
    rng: random.Random,
    kept: list[dict[str, Any]],
    batch: int,
    log: Callable[[str], None],
) -> tuple[int, int]:
    """``settings.rounds`` more rounds into ``kept``, contended ones redone (bounded); returns
    how many were redone and how many contended ones were kept once the bound was reached."""
    retries = RETRIES_PER_ROUND * settings.rounds
    done = streak = redone = kept_contended = 0
    while done < settings.rounds:
        measured = _run_round(turns, count, settings, rng)
        contended = _contended(measured, settings)
        if contended and redone < retries:
            redone += 1
            streak += 1
            time.sleep(min(1.0, 0.1 * streak))  # give the other work time to pass
            continue
        streak = 0
        kept_contended += contended
        kept.append(measured)
        done += 1
        if done % PROGRESS_EVERY == 0 and done < settings.rounds:
            log(f"batch {batch}: round {done}/{settings.rounds} ({redone} redone)")
    return redone, kept_contended


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
        redone, contended = _run_batch(turns, count, settings, rng, kept, batch, log)
        repeated += redone
        kept_contended += contended
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
