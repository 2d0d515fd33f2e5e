"""Benchmark an artifact on the host CPU, in a fresh Python process.

The measurement itself lives in :mod:`mobileforge.bench.host_runner`; this module only starts
it, bounds it with a timeout and turns its one-line JSON answer (or its failure) into a dict or
a clear exception. Importing this module does not import torch.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mobileforge.bench import check_request, tail, thermal
from mobileforge.bench.stats import combine_runs

#: How much of the runner's stderr an error message carries.
STDERR_TAIL_CHARS = 4000


def _tail(text: str) -> str:
    return tail(text, STDERR_TAIL_CHARS)


def run_host_benchmark(
    artifact: str | Path,
    fmt: str,
    input_shape: list[int],
    threads: int,
    warmup: int,
    iterations: int,
    timeout_s: float = 600,
    cooldown_s: float = 0.0,
    engine: str | None = None,
) -> dict[str, Any]:
    """Benchmark ``artifact`` (``fmt`` ``"ptl"`` or ``"pte"``) on this machine.

    Runs ``python -m mobileforge.bench.host_runner`` so the numbers come from a process where
    nothing is cached: the runner pins itself to ``threads`` CPUs, sets and verifies the
    runtime's thread count, then measures load, first inference and ``iterations`` timed runs
    after ``warmup`` untimed ones. Returns the runner's result dict (see ``host_runner.run``)
    plus ``process_wall_ms``, the whole child's wall time including interpreter start-up.

    ``engine`` is the torch quantized engine (``"x86"``, ``"qnnpack"`` ...) an int8 ``ptl`` was
    built for; it is set before loading and recorded as ``quantized_engine`` (the default
    engine is recorded when None). ``cooldown_s`` sleeps between first inference and warm-up.

    ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` are set to ``threads`` in the child so OpenMP does
    not spin up a pool sized for the whole machine before ``torch.set_num_threads`` runs.

    Raises ``RuntimeError`` carrying the tail of the runner's stderr when it fails, times out
    or prints anything but one JSON object.
    """
    artifact = Path(artifact).resolve()
    input_shape = [int(d) for d in input_shape]
    check_request(artifact, fmt, input_shape, threads, warmup, iterations)
    cmd = [
        sys.executable,
        "-m",
        "mobileforge.bench.host_runner",
        "--artifact",
        str(artifact),
        "--format",
        fmt,
        "--input-shape",
        ",".join(str(d) for d in input_shape),
        "--threads",
        str(threads),
        "--warmup",
        str(warmup),
        "--iterations",
        str(iterations),
        "--cooldown-s",
        str(cooldown_s),
    ]
    if engine is not None:
        cmd += ["--engine", engine]
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    # The runner must import this very package, even when the caller runs from a source tree.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise RuntimeError(
            f"host benchmark of {artifact} timed out after {timeout_s} s; stderr tail:\n"
            f"{_tail(stderr or '')}"
        ) from exc
    wall_ms = (time.perf_counter() - started) * 1000.0
    if proc.returncode != 0:
        raise RuntimeError(
            f"host benchmark runner failed (exit {proc.returncode}) for {artifact}; "
            f"stderr tail:\n{_tail(proc.stderr)}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        if len(lines) != 1:
            raise ValueError(f"expected one JSON line on stdout, got {len(lines)}")
        result = json.loads(lines[0])
        if not isinstance(result, dict):
            raise ValueError("stdout JSON is not an object")
    except ValueError as exc:
        raise RuntimeError(
            f"host benchmark runner printed an unusable result ({exc}); stdout tail:\n"
            f"{_tail(proc.stdout)}\nstderr tail:\n{_tail(proc.stderr)}"
        ) from exc
    result["process_wall_ms"] = wall_ms
    return result


#: Per-run keys of a host result (kept in ``runs``); the rest describes every run alike.
_PER_RUN = (
    "latency_ms", "samples_ms", "load_ms", "first_inference_ms", "import_ms", "peak_rss_mb",
    "peak_rss_before_load_mb", "rss_before_load_mb", "timed_loop", "process_start_unix",
    "startup_to_ready_ms", "process_wall_ms", "warnings",
)  # fmt: skip


def run_host_repeats(
    artifact: str | Path,
    fmt: str,
    input_shape: list[int],
    threads: int,
    warmup: int,
    iterations: int,
    repeats: int = 3,
    cooldown: Mapping[str, Any] | None = None,
    engine: str | None = None,
    timeout_s: float = 600,
) -> dict[str, Any]:
    """``repeats`` fresh-process benchmarks of one artifact, combined like a phone's runs.

    Before each process the ``cooldown`` settings apply (:func:`thermal.cool_down`, reading this
    machine's thermal zones) and a thermal/frequency snapshot is taken, another after it.
    ``latency_ms`` combines the runs (:func:`~mobileforge.bench.stats.combine_runs`: median of
    their medians, run-to-run ``cv``); ``load_ms`` and ``first_inference_ms`` are medians,
    ``peak_rss_mb`` the largest; each run's own numbers are under ``runs``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    first: dict[str, Any] = {}
    warnings: list[str] = []
    zones = (cooldown or {}).get("zones") or ""
    for index in range(repeats):
        cooled = thermal.cool_down(cooldown or {}, thermal.host_snapshot)
        if cooled["warning"]:
            warnings.append(f"run {index + 1}: {cooled['warning']}")
        before = thermal.host_snapshot()
        started_unix = time.time()
        result = run_host_benchmark(
            artifact, fmt, input_shape, threads, warmup, iterations, timeout_s, engine=engine
        )
        after = thermal.host_snapshot()
        warnings += [f"run {index + 1}: {w}" for w in result.get("warnings") or []]
        first = first or result
        runs.append(
            {
                **{key: result.get(key) for key in _PER_RUN},
                "started_unix": started_unix,
                "ended_unix": started_unix + result["process_wall_ms"] / 1000.0,
                "runner_s": result["process_wall_ms"] / 1000.0,
                "thermal_before": before,
                "thermal_after": after,
                "cooldown": cooled,
            }
        )
    job_s = time.perf_counter() - started
    runner_s = sum(run["runner_s"] for run in runs)
    load = sorted(run["load_ms"] for run in runs)
    first_inference = sorted(run["first_inference_ms"] for run in runs)
    return {
        **{key: value for key, value in first.items() if key not in _PER_RUN},
        "repeats": repeats,
        "cooldown": dict(cooldown or {}),
        "latency_ms": combine_runs([run["latency_ms"] for run in runs]),
        "load_ms": float(statistics.median(load)),
        "first_inference_ms": float(statistics.median(first_inference)),
        "rss_before_load_mb": runs[0]["rss_before_load_mb"],
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "thermal": {
            "before_c": thermal.hottest(runs[0]["thermal_before"], zones),
            "after_c": thermal.hottest(runs[-1]["thermal_after"], zones),
        },
        "timing": {"job_s": job_s, "runner_s": runner_s, "overhead_s": job_s - runner_s},
        "warnings": warnings,
        "runs": runs,
    }
