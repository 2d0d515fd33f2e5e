"""Benchmarks of built artifacts: on the host CPU (fresh processes) and on Android over adb.

The subpackage ``host`` measures on this machine, ``android`` on a phone; ``device`` picks one
for a configured device. Shared by both: ``stats`` summarises latencies, ``thermal`` reads and
waits out heat, ``devicelock`` and ``farm`` keep two benchmarks off the same device,
``runstate`` remembers a device within a workflow run, ``timeline`` checks the overlap,
``compare`` runs paired rounds, ``peak`` measures the host's GEMM ceiling. Both kinds of
benchmark check their request and quote tool output with the helpers below. Importing this
package (or ``host``, ``android``, ``devicelock``, ``stats``) does not import torch.
"""

from __future__ import annotations

from pathlib import Path

#: Artifact formats a benchmark can run.
FORMATS = ("ptl", "pte")


def check_request(
    artifact: Path, fmt: str, input_shape: list[int], threads: int, warmup: int, iterations: int
) -> None:
    """Refuse a benchmark request that could not measure anything, before any work starts."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    if not artifact.is_file():
        raise FileNotFoundError(f"artifact not found: {artifact}")
    if not input_shape or any(int(d) <= 0 for d in input_shape):
        raise ValueError(f"input_shape must be positive integers, got {input_shape!r}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if warmup < 0 or iterations < 1:
        raise ValueError(f"need warmup >= 0 and iterations >= 1, got {warmup}, {iterations}")


def tail(text: str, limit: int) -> str:
    """The last ``limit`` characters of a tool's output, for an error message."""
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]
