"""Which of these artifacts is faster, here? ``python -m mobileforge.compare A B ...``.

Times ``.ptl`` and ``.pte`` files side by side in interleaved rounds with an A/A control (the
first artifact held twice), as the workflow's ``compare`` rule does for every model and device
(:mod:`mobileforge.bench.compare` explains the method), and prints the paired table: per
artifact its median latency, its latency over the first artifact's with the interval of that
ratio, and the verdict (faster, slower or tie, beyond the A/A control's own spread).

    python -m mobileforge.compare results/m/pte/int8.xnnpack.pte results/m/pte/fp32.xnnpack.pte
    python -m mobileforge.compare a.pte a.pte --rounds 30 --json out.json   # an A/A test

``--json`` writes the record with, per artifact in the order given, ``path``, ``ratio``,
``ratio_low``, ``ratio_high`` (its latency over the first's) and ``verdict``. An artifact's input
shape and int8 engine come from its sidecar (``<artifact>.json``) where there is one; otherwise
from ``--input-shape`` and ``--engine``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mobileforge import files
from mobileforge.bench import compare
from mobileforge.bench.host.paired import HeldArtifacts, HostArtifact

if TYPE_CHECKING:  # the adb client is imported only for a phone
    from mobileforge.bench.android.paired import PhoneArtifact

FORMATS = ("ptl", "pte")


def host_artifact(
    path: str | os.PathLike[str], input_shape: list[int] | None = None, engine: str | None = None
) -> HostArtifact:
    """What holding ``path`` needs: format from its suffix, shape and engine from its sidecar
    unless given. (Nothing is loaded here: the processes that hold artifacts are forked from
    this one, which must not have run the runtimes.)"""
    path = Path(path)
    fmt = path.suffix.lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"{path}: not a .ptl or .pte file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    sidecar_file = files.sidecar_path(path)
    sidecar = files.read_json(sidecar_file) if sidecar_file.is_file() else {}
    shape = input_shape or sidecar.get("input_shape")
    if shape is None:
        raise ValueError(f"{path}: no sidecar ({sidecar_file.name}) names its input shape: pass "
                         "--input-shape, e.g. 1,3,32,32")  # fmt: skip
    return HostArtifact(str(path), fmt, [int(d) for d in shape], engine or sidecar.get("engine"))


def compare_on_host(
    artifacts: Sequence[HostArtifact],
    threads: int,
    settings: compare.Settings,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Compare ``artifacts`` on this machine, the first also held a second time (A/A control).

    The record of :func:`mobileforge.bench.compare.run_comparison`, plus ``artifacts``: per
    artifact given, in order, its ``path``, ``format``, ``engine``, ``load_ms``, ``median_ms``
    and ``ratio``/``ratio_low``/``ratio_high`` over the first one, and ``verdict``.
    """
    if not artifacts:
        raise ValueError("nothing to compare")
    held = [*artifacts, artifacts[0]]
    log(f"holding {len(held)} artifacts ({len(artifacts)} and an A/A copy), {settings.processes} "
        f"processes each of {threads} thread(s), on the same CPUs")  # fmt: skip
    with HeldArtifacts(held, threads, settings.warmup, settings.processes) as processes:
        record = compare.run_comparison(processes, _names(artifacts), (0, len(held) - 1),
                                        settings, log)  # fmt: skip
        ready = processes.ready
    record["artifacts"] = _rows(record, artifacts, [r["load_ms"] for r in ready])
    for row, started in zip(record["artifacts"], ready, strict=False):
        row["pids"] = started["pids"]
    record.update(threads=threads, affinity=ready[0]["affinity"])
    return record


def compare_on_phone(
    artifacts: Sequence[PhoneArtifact],
    device: dict[str, Any],
    runners: dict[str, str],
    settings: compare.Settings,
    operations: dict[str, Any],
    state: Any,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Compare ``artifacts`` on the phone ``device`` (config entry), one runner process per
    turn (:mod:`mobileforge.bench.android.paired`); the first is also timed a second time as the
    A/A control. The same record as :func:`compare_on_host`."""
    from mobileforge.bench.android.paired import PhoneTurns

    if not artifacts:
        raise ValueError("nothing to compare")
    held = [*artifacts, artifacts[0]]
    log(f"alternating {len(held)} runner processes per round on {device['serial']} "
        f"({len(artifacts)} artifacts and an A/A copy)")  # fmt: skip
    job = f"comparison on {device['serial']}"
    timeouts, retries = operations["timeouts"], operations["retries"]
    turns = PhoneTurns(list(held), device, runners, timeouts, retries, state, job)
    record = compare.run_comparison(turns, _names(artifacts), (0, len(held) - 1), settings, log)
    record["artifacts"] = _rows(record, artifacts, [None] * len(artifacts))
    record.update(threads=device["threads"], affinity=None)
    return record


def _names(artifacts: Sequence[HostArtifact | PhoneArtifact]) -> list[str]:
    return [a.path for a in artifacts] + [f"{artifacts[0].path} (A/A copy)"]


def _rows(
    record: dict[str, Any],
    artifacts: Sequence[HostArtifact | PhoneArtifact],
    load_ms: list[float | None],
) -> list[dict[str, Any]]:
    record["resolution"] = compare.resolution(record["control"])
    ratios = compare.over_first(record)
    return [
        {
            "path": artifact.path,
            "format": artifact.fmt,
            "engine": getattr(artifact, "engine", None),
            "input_shape": artifact.input_shape,
            "load_ms": load_ms[index],
            "median_ms": record["median_ms"][index],
            **ratios[index],
        }
        for index, artifact in enumerate(artifacts)
    ]


def table(record: dict[str, Any]) -> str:
    """The paired table a person reads: one line per artifact, then the A/A line."""
    settings = record["settings"]
    control = record["control"]
    lines = [
        f"paired comparison: {record['rounds_kept']} rounds x {settings['runs_per_turn']} timed "
        f"runs per turn ({settings['turn_warmup']} warm-up), each artifact in "
        f"{settings['processes']} process(es) by turns, {record['threads']} thread(s) on "
        f"{_cpus(record['affinity'])}, order shuffled (seed "
        f"{settings['seed']}); ratio = latency / latency of #1, median over rounds "
        f"[{settings['confidence']:.0%} bootstrap interval]",
        f"{'#':>2}  {'median ms':>9}  {'ratio':>6}  {'interval':>15}  {'verdict':<9}  artifact",
    ]
    for index, row in enumerate(record["artifacts"], start=1):
        interval = "" if index == 1 else f"[{row['ratio_low']:.3f}, {row['ratio_high']:.3f}]"
        lines.append(
            f"{index:>2}  {row['median_ms']:>9.4g}  {row['ratio']:>6.3f}  {interval:>15}  "
            f"{row['verdict']:<9}  {row['path']}"
        )
    lines.append(
        f"A/A control (#1 held twice): {control['ratio']:.3f} [{control['ratio_low']:.3f}, "
        f"{control['ratio_high']:.3f}]: "
        + (
            f"ok; differences within ±{record['resolution']:.1%} of 1 are ties"
            if control["ok"]
            else f"FAILED ({record['unreliable_reason']}): nothing is decided"
        )
    )
    extra = record["rounds_repeated_for_contention"]
    lines.append(
        f"rounds: {record['rounds_kept']} kept in {record['batches']} batch(es); {extra} redone "
        f"because other work took over {settings['max_other_cpus']:g} of a pinned CPU or loaded "
        f"its cache neighbours over {settings['max_neighbour_load']:g}"
        + (
            f", {record['rounds_kept_contended']} kept anyway"
            if record["rounds_kept_contended"]
            else ""
        )  # fmt: skip
        + f"; {record['wall_s']:.1f} s"
    )
    return "\n".join(lines)


def _cpus(affinity: list[int] | None) -> str:
    return "the phone" if affinity is None else "CPU " + ",".join(str(c) for c in affinity)


def _shape(text: str) -> list[int]:
    try:
        dims = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: e.g. 1,3,32,32") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: positive integers")
    return dims


def _device_threads(name: str, config_path: str) -> int:
    """Runtime threads of the config's device ``name`` (host devices only, for now)."""
    from mobileforge.config import ConfigError, load_config_file

    try:
        config = load_config_file(config_path)
    except (OSError, ConfigError) as error:
        raise SystemExit(f"mobileforge.compare: cannot read {config_path}: {error}") from None
    devices = config["devices"]
    if name not in devices:
        raise SystemExit(f"mobileforge.compare: {config_path} has no device {name!r} "
                         f"(devices: {', '.join(devices)})")  # fmt: skip
    if devices[name]["kind"] != "host":
        raise SystemExit(
            f"mobileforge.compare: device {name!r} is a phone ({devices[name]['kind']}); "
            "paired comparisons run on host devices"
        )
    return int(devices[name]["threads"])


def parser() -> argparse.ArgumentParser:
    defaults = compare.Settings()
    p = argparse.ArgumentParser(
        prog="python -m mobileforge.compare",
        description=__doc__.splitlines()[0],
        epilog="The same file may be given twice. Exit 0 when the comparison ran, whatever "
        "it found; 1 on an error; 2 on bad arguments.",
    )
    p.add_argument("artifacts", nargs="+", help=".ptl/.pte files; ratios are over the first")
    p.add_argument("--device", help="a host device of --config (its threads); default: this "
                   "machine at --threads")  # fmt: skip
    p.add_argument("--config", default="config.yaml", help="for --device (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="runtime threads (default: 1)")
    p.add_argument("--rounds", type=int, default=defaults.rounds, help="rounds per batch")
    p.add_argument("--runs-per-turn", type=int, default=defaults.runs_per_turn)
    p.add_argument("--processes", type=int, default=defaults.processes,
                   help="processes holding each artifact, taking turns (%(default)s)")  # fmt: skip
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--input-shape", type=_shape, help="for files without a sidecar: 1,3,H,W")
    p.add_argument("--engine", help="torch quantized engine for an int8 .ptl without a sidecar")
    p.add_argument("--json", dest="json_path", help="also write the record here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    threads = _device_threads(args.device, args.config) if args.device else args.threads
    try:
        settings = compare.Settings(
            rounds=args.rounds, runs_per_turn=args.runs_per_turn, seed=args.seed,
            processes=args.processes,
        )  # fmt: skip
        artifacts = [host_artifact(p, args.input_shape, args.engine) for p in args.artifacts]
        record = compare_on_host(
            artifacts, threads, settings, lambda line: print(line, file=sys.stderr, flush=True)
        )
    except (ValueError, OSError, RuntimeError) as error:
        print(f"mobileforge.compare: {error}", file=sys.stderr)
        return 1
    print(table(record))
    if args.json_path:
        files.write_bytes_atomic(args.json_path, (json.dumps(record, indent=1) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
