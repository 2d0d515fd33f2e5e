"""What two runs of the same config must agree on: every file under results/ but measurements."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

# Measured outputs: latencies, comparisons, profiles and the peak, the tables and plots made of
# them, and sidecars holding timings (training and fine-tuning seconds per epoch).
MEASURED = ("bench/", "compare/", "peak/", "profile/", "report/", "summary.csv", "summary.md",
            "checkpoint.pt.json")  # fmt: skip
FINETUNED_SIDECAR = re.compile(r"/pruned-channel-[^/]*\.pt\.json$")


def artifact_digests(workdir: Path) -> dict[str, str]:
    """sha256 of every file under results/ that is not a measurement."""
    digests = {}
    for path in sorted((workdir / "results").rglob("*")):
        name = path.relative_to(workdir).as_posix()
        measured = FINETUNED_SIDECAR.search(name) or any(part in name for part in MEASURED)
        if path.is_file() and not measured:
            digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests
