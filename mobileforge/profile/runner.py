"""The process a host profile runs in: ``python -m mobileforge.profile.runner ...``.

Set up as the host benchmark's processes are (:mod:`mobileforge.bench.host.runner`): pinned to
the device's first ``threads`` CPUs before any runtime is imported, the runtime's thread count
set and read back, the ``.ptl``'s quantized engine selected before loading, the same seeded
input. The numbers are then comparable with the benchmark's. The raw profile (per run, the
layers in order, and the end-to-end times) is written as JSON to ``--output``; everything the
libraries print goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from mobileforge.bench.host import runner as bench
from mobileforge.profile import pte as pte_profile
from mobileforge.profile import ptl as ptl_profile
from mobileforge.profile.record import METHODS


def profile(
    artifact: Path,
    fmt: str,
    input_shape: list[int],
    threads: int,
    runs: int,
    warmup: int,
    engine: str | None,
) -> dict[str, Any]:
    """Profile ``artifact`` in this process (pins it: run it in a process of its own)."""
    affinity = bench.pin_cpus(threads)
    _, executorch_version = bench._import_runtime(fmt)
    import torch

    applied, *_ = bench.apply_threads(fmt, threads)
    bench.select_engine(fmt, engine)
    x = bench.benchmark_input(input_shape)
    modules: dict[str, str | None] = {}
    module_error = None
    if fmt == "pte":
        with tempfile.TemporaryDirectory(prefix="mobileforge-etdump-") as tmp:
            etdump = Path(tmp) / "profile.etdp"
            with torch.inference_mode():
                end_to_end = pte_profile.run_with_etdump(artifact, x, runs, warmup, etdump)
            layers = pte_profile.etdump_runs(etdump, runs)
        unprofiled = None  # ETDump is on for the whole program; it costs little
    else:
        layers, end_to_end, unprofiled = ptl_profile.profile_ptl(str(artifact), x, runs, warmup)
        try:
            modules = ptl_profile.module_names(str(artifact), x, layers[0])
        except (ValueError, RuntimeError) as error:  # no module names; the times still stand
            module_error = str(error)
    return {
        "method": METHODS[fmt],
        "runs": layers,
        "end_to_end_ms": end_to_end,
        "unprofiled_ms": unprofiled,
        "modules": modules,
        "module_error": module_error,
        "threads": applied,
        "affinity": affinity,
        "torch_version": torch.__version__,
        "executorch_version": executorch_version,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", required=True, type=Path)
    p.add_argument("--format", required=True, choices=sorted(METHODS), dest="fmt")
    p.add_argument("--input-shape", required=True, type=bench._shape)
    p.add_argument("--threads", required=True, type=int)
    p.add_argument("--runs", required=True, type=int)
    p.add_argument("--warmup", required=True, type=int)
    p.add_argument("--engine", default=None)
    p.add_argument("--output", required=True, type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    os.dup2(2, 1)  # C++ chatter on fd 1 lands on stderr
    sys.stdout = sys.stderr
    args = _parser().parse_args(argv)
    result = profile(args.artifact, args.fmt, args.input_shape, args.threads, args.runs,
                     args.warmup, args.engine)  # fmt: skip
    args.output.write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
