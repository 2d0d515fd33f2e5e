"""When each benchmark process ran, read back from the result JSONs: is the farm busy?

``python -m mobileforge.bench.timeline results/*/bench/*/*.json`` prints one line per runner
process (device, physical device, start and end relative to the first, artifact) and then, per
physical device, how many of its runs overlapped (must be 0) and the most devices busy at once.
Torch-free.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def intervals(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One record per runner process: ``device``, ``physical``, ``start``, ``end``, ``artifact``.

    ``physical`` is the phone's serial at its adb server (``host`` for this machine); times are
    Unix seconds of the runner itself where the phone's clock gave them, else of the command.
    """
    found = []
    for path in paths:
        result = json.loads(Path(path).read_text())
        if result.get("device_kind") == "adb":
            physical = f"{result['device_info']['serial']}@{result['adb_server']}"
        else:
            physical = "host"
        for run in result.get("runs", []):
            start = run.get("runner_start_unix") or run["started_unix"]
            found.append(
                {
                    "device": result["device"],
                    "physical": physical,
                    "start": start,
                    "end": start + run["runner_s"],
                    "artifact": result["artifact"],
                }
            )
    return sorted(found, key=lambda r: r["start"])


def overlaps(records: list[dict[str, Any]]) -> dict[str, int]:
    """Per physical device, how many pairs of its runs overlapped in time (should be 0)."""
    counts: dict[str, int] = {}
    by_device: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_device.setdefault(record["physical"], []).append(record)
    for physical, runs in by_device.items():
        runs.sort(key=lambda r: r["start"])
        counts[physical] = sum(
            1 for a, b in zip(runs, runs[1:], strict=False) if b["start"] < a["end"]
        )
    return counts


def max_concurrency(records: list[dict[str, Any]]) -> tuple[int, float]:
    """Most physical devices busy at the same moment, and the seconds spent with that many."""
    events = sorted(
        [(r["start"], 1, r["physical"]) for r in records]
        + [(r["end"], -1, r["physical"]) for r in records]
    )
    busy: dict[str, int] = {}
    best, best_s, last = 0, 0.0, None
    for when, step, physical in events:
        active = sum(1 for n in busy.values() if n > 0)
        if last is not None and active == best:
            best_s += when - last
        busy[physical] = busy.get(physical, 0) + step
        now = sum(1 for n in busy.values() if n > 0)
        if now > best:
            best, best_s = now, 0.0
        last = when
    return best, best_s


def main(argv: list[str] | None = None) -> int:
    paths = argv if argv is not None else sys.argv[1:]
    records = intervals(paths)
    if not records:
        print("no runs found")
        return 1
    origin = records[0]["start"]
    for r in records:
        print(
            f"{r['start'] - origin:8.2f} {r['end'] - origin:8.2f}  {r['device']:<12} "
            f"{r['physical']:<32} {r['artifact']}"
        )
    for physical, count in sorted(overlaps(records).items()):
        print(f"overlapping runs on {physical}: {count}")
    most, seconds = max_concurrency(records)
    print(f"most devices busy at once: {most} (for {seconds:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
