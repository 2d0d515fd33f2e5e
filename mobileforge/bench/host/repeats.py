"""Benchmark an artifact on the host CPU, each repeat in a fresh process.

The measurement itself lives in :mod:`mobileforge.bench.host.runner`; this module only starts
its serving process, bounds every answer with a timeout and turns its JSON lines (or its
failure) into a dict or a clear exception. Importing this module does not import torch.
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


def _runner(
    artifact: Path,
    fmt: str,
    input_shape: list[int],
    threads: int,
    warmup: int,
    iterations: int,
    engine: str | None,
) -> tuple[list[str], dict[str, str]]:
    """The serving runner's command line and environment for one artifact (checked first).

    ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` are set to ``threads`` so OpenMP does not spin up a
    pool sized for the whole machine before ``torch.set_num_threads`` runs.
    """
    input_shape = [int(d) for d in input_shape]
    check_request(artifact, fmt, input_shape, threads, warmup, iterations)
    cmd = [
        sys.executable,
        "-m",
        "mobileforge.bench.host.runner",
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
    ]
    if engine is not None:
        cmd += ["--engine", engine]
    return cmd, runner_env(threads)


def runner_env(threads: int) -> dict[str, str]:
    """The environment of a process that runs an artifact on the host with ``threads`` threads
    (the benchmark's runner, the profile's): OpenMP sized to ``threads`` and this very package
    importable, even when the caller runs from a source tree."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    package_root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def _parse_result(line: str, artifact: Path, stdout: str, stderr: str) -> dict[str, Any]:
    """The runner's one JSON object, or a RuntimeError carrying what it printed."""
    try:
        result = json.loads(line)
        if not isinstance(result, dict):
            raise ValueError("stdout JSON is not an object")
    except ValueError as exc:
        raise RuntimeError(
            f"host benchmark runner printed an unusable result ({exc}); stdout tail:\n"
            f"{_tail(stdout)}\nstderr tail:\n{_tail(stderr)}"
        ) from exc
    if "error" in result:
        raise RuntimeError(
            f"host benchmark of {artifact} failed: {result['error']}; stderr tail:\n{_tail(stderr)}"
        )
    return result


class _Server:
    """A serving :mod:`~mobileforge.bench.host.runner` process: one forked benchmark per
    :meth:`run`."""

    def __init__(
        self,
        artifact: str | Path,
        fmt: str,
        input_shape: list[int],
        threads: int,
        warmup: int,
        iterations: int,
        engine: str | None,
        timeout_s: float,
    ) -> None:
        self.artifact = Path(artifact).resolve()
        self.command, self.env = _runner(
            self.artifact, fmt, input_shape, threads, warmup, iterations, engine
        )
        self.timeout_s = timeout_s
        self.import_s = 0.0

    def __enter__(self) -> _Server:
        import tempfile

        self.stderr = tempfile.TemporaryFile(mode="w+")  # unbounded chatter: not a pipe
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=self.env,
        )
        ready = self._answer("start")  # the runner says so once its imports are done
        if not ready.get("ready"):
            raise RuntimeError(f"host benchmark runner did not start: {ready}")
        self.import_s = time.perf_counter() - started
        return self

    def _stderr(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()

    def _answer(self, what: str) -> dict[str, Any]:
        """The runner's next JSON line, within the timeout."""
        import select

        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout_s)
        if not ready:
            self.proc.kill()
            raise RuntimeError(
                f"host benchmark of {self.artifact} timed out after {self.timeout_s} s ({what}); "
                f"stderr tail:\n{_tail(self._stderr())}"
            )
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(
                f"host benchmark runner for {self.artifact} exited (code {self.proc.wait()}) "
                f"before answering ({what}); stderr tail:\n{_tail(self._stderr())}"
            )
        return _parse_result(line, self.artifact, line, self._stderr())

    def run(self) -> dict[str, Any]:
        """One forked benchmark; its ``process_wall_ms`` spans the request and the answer."""
        assert self.proc.stdin is not None
        asked = time.perf_counter()
        try:
            self.proc.stdin.write("run\n")
            self.proc.stdin.flush()
        except BrokenPipeError as exc:
            raise RuntimeError(
                f"host benchmark runner for {self.artifact} exited early; stderr tail:\n"
                f"{_tail(self._stderr())}"
            ) from exc
        result = self._answer("run")
        result["process_wall_ms"] = (time.perf_counter() - asked) * 1000.0
        return result

    def __exit__(self, *exc: object) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


#: Per-run keys of a host result (kept in ``runs``); the rest describes every run alike.
_PER_RUN = (
    "pid", "latency_ms", "samples_ms", "load_ms", "first_inference_ms", "import_ms", "peak_rss_mb",
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

    One runner (:mod:`~mobileforge.bench.host.runner`) imports the runtimes and forks a new
    process per repeat: each repeat loads, warms up and times the artifact in a process of its own,
    while the interpreter start and imports are paid once per artifact, not per repeat.
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
    server = _Server(artifact, fmt, input_shape, threads, warmup, iterations, engine, timeout_s)
    with server:
        for index in range(repeats):
            cooled = thermal.cool_down(cooldown or {}, thermal.host_snapshot)
            if cooled["warning"]:
                warnings.append(f"run {index + 1}: {cooled['warning']}")
            before = thermal.host_snapshot()
            started_unix = time.time()
            result = server.run()
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
        import_s = server.import_s
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
        "thermal": thermal.across_runs(runs, zones),
        # runner_s: the forked runs; import_s: the serving runner's start and imports, once.
        "timing": {
            "job_s": job_s,
            "runner_s": runner_s,
            "import_s": import_s,
            "overhead_s": job_s - runner_s,
        },
        "warnings": warnings,
        "runs": runs,
    }
