"""Each job's own CPU time, peak memory and start-up overhead: in its log and in a record beside it.

Snakemake's ``benchmark:`` files measure the process tree of the job's process. A job run by a warm
worker (:mod:`mobileforge.warm`) does its work in a fork of the worker, outside that tree, so those
files see only a process waiting on a socket. Every job therefore measures itself when its stage
returns, the same way warm or cold:

- ``cpu_user_s`` / ``cpu_system_s``: this process and the children it waited for. A job in its
  own process counts its interpreter start and imports; a warm job only what it did after the
  fork (the worker imported once for all jobs).
- ``peak_rss_mb``: the larger of this process's and its children's peak resident memory. A fork
  starts with the worker's resident pages (torch's), as a job in its own process has them after
  importing torch.
- ``overhead_s``: from the job's process start (Snakemake's script, 10 ms resolution) to the
  stage's first line; ``stage_s``: the stage itself.

``logs/<rule>/<job>.log`` ends with one ``mobileforge: job usage`` line and the record is
``logs/<rule>/<job>.usage.json``. ``python -m mobileforge.job_usage [LOGS]`` totals them per rule.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from mobileforge import files
from mobileforge.warm import protocol

SCHEMA = "mobileforge.job-usage/1"
KEYS = frozenset(
    {
        "schema",
        "rule",
        "wildcards",
        "mode",  # "warm": a fork of the run's worker; "cold": the job's own process
        "cpu_user_s",
        "cpu_system_s",
        "peak_rss_mb",
        "overhead_s",
        "stage_s",
    }
)


def usage_path(log: str | Path) -> Path:
    """``logs/fuse/m.int8.log`` -> ``logs/fuse/m.int8.usage.json``."""
    log = Path(log)
    return log.with_name(f"{log.name.removesuffix('.log')}.usage.json")


def measure(job: Any, mode: str, stage_started: float) -> dict[str, Any]:
    """The usage record of the job running in this process, now."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "schema": SCHEMA,
        "rule": job.rule,
        "wildcards": dict(job.wildcards),
        "mode": mode,
        "cpu_user_s": round(own.ru_utime + children.ru_utime, 3),
        "cpu_system_s": round(own.ru_stime + children.ru_stime, 3),
        "peak_rss_mb": round(max(own.ru_maxrss, children.ru_maxrss) / 1024, 1),  # KiB on Linux
        "overhead_s": None if job.started_at is None else round(stage_started - job.started_at, 3),
        "stage_s": round(protocol.boottime() - stage_started, 3),
    }


def report(job: Any, log: str | None, mode: str, stage_started: float) -> dict[str, Any]:
    """Write the job's usage to its log (stderr) and, with a log, to the record beside it."""
    record = measure(job, mode, stage_started)
    overhead = "unknown" if record["overhead_s"] is None else f"{record['overhead_s']:.2f} s"
    print(
        f"mobileforge: job usage ({mode}): "
        f"{record['cpu_user_s'] + record['cpu_system_s']:.2f} CPU-s "
        f"(user {record['cpu_user_s']:.2f}, system {record['cpu_system_s']:.2f}), "
        f"peak RSS {record['peak_rss_mb']:.0f} MB, start-up {overhead}, "
        f"stage {record['stage_s']:.2f} s",
        file=sys.stderr,
        flush=True,
    )
    if log:
        files.write_json_atomic(usage_path(log), record)
    return record


def read(path: str | Path) -> dict[str, Any]:
    """A usage record, checked against the declared keys (a renamed key fails by name)."""
    record = files.read_json(path)
    if record.get("schema") != SCHEMA or set(record) != KEYS:
        missing, unexpected = sorted(KEYS - set(record)), sorted(set(record) - KEYS)
        raise ValueError(
            f"{path}: not a {SCHEMA} record (schema {record.get('schema')!r}, "
            f"missing {missing}, unexpected {unexpected})"
        )
    return record


def by_rule(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per rule: jobs, total CPU-s, median start-up overhead, largest peak RSS; costliest first."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[record["rule"]].append(record)
    rows = []
    for rule, group in groups.items():
        overheads = [r["overhead_s"] for r in group if r["overhead_s"] is not None]
        rows.append(
            {
                "rule": rule,
                "jobs": len(group),
                "modes": ",".join(sorted({r["mode"] for r in group})),
                "cpu_s": round(sum(r["cpu_user_s"] + r["cpu_system_s"] for r in group), 1),
                "median_overhead_s": round(statistics.median(overheads), 3) if overheads else None,
                "max_peak_rss_mb": max(r["peak_rss_mb"] for r in group),
            }
        )
    return sorted(rows, key=lambda row: -row["cpu_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mobileforge.job_usage",
        description="Each rule's jobs' own CPU time, start-up overhead and peak memory.",
    )
    parser.add_argument("logs", nargs="?", default="logs", help="the run's logs/ folder")
    parser.add_argument("--json", action="store_true", help="print the per-rule rows as JSON")
    args = parser.parse_args(argv)
    paths = sorted(Path(args.logs).rglob("*.usage.json"))
    if not paths:
        print(f"no job usage records under {args.logs}/ (run the workflow first)", file=sys.stderr)
        return 1
    records = [read(path) for path in paths]
    rows = by_rule(records)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    overheads = [r["overhead_s"] for r in records if r["overhead_s"] is not None]
    print(f"{'rule':<18} {'jobs':>5} {'mode':>9} {'CPU-s':>8} {'start-up s':>11} {'peak MB':>8}")
    for row in rows:
        median = "-" if row["median_overhead_s"] is None else f"{row['median_overhead_s']:.2f}"
        print(
            f"{row['rule']:<18} {row['jobs']:>5} {row['modes']:>9} {row['cpu_s']:>8.1f} "
            f"{median:>11} {row['max_peak_rss_mb']:>8.0f}"
        )
    total = sum(row["cpu_s"] for row in rows)
    median_all = f"{statistics.median(overheads):.2f} s" if overheads else "unknown"
    print(f"{len(records)} jobs, {total:.1f} CPU-s, median start-up {median_all}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
