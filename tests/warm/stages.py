"""Stages for the warm worker's tests, run through mobileforge.job.run like the workflow's."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from mobileforge import files
from mobileforge.job import Job, preloads, without_torch


def _describe() -> dict:
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "torch_loaded": "torch" in sys.modules,  # before the stage imports anything
        "threads": len(os.listdir("/proc/self/task")),
        "cwd": os.getcwd(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


@without_torch  # so torch in sys.modules can only come from the worker
def describe(job: Job) -> None:
    """Write who ran the job: its pid, its parent's, whether torch was already imported."""
    facts = _describe()
    print(f"stdout of {job.wildcards['name']}", flush=True)
    job.log(f"running {job.wildcards['name']}")
    files.write_json_atomic(job.output["result"], facts)


@without_torch
def wait_then_write(job: Job) -> None:
    """Say who runs it, wait until the test releases it, then write the output (atomically)."""
    files.write_json_atomic(job.params["running"], _describe())
    release = Path(job.params["release"])
    while not release.exists():
        time.sleep(0.05)
    files.write_bytes_atomic(job.output["result"], b"written after release\n")


@without_torch
def fail(job: Job) -> None:
    raise ValueError("broken on purpose")


@preloads(["tests.warm.threaded"])
@without_torch
def describe_threaded(job: Job) -> None:
    """describe, for a worker whose preloads start a thread (so it must not fork)."""
    files.write_json_atomic(job.output["result"], _describe())


def read(path: Path) -> dict:
    return json.loads(Path(path).read_text())
