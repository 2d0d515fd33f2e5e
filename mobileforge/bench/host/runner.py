"""Fresh-process host benchmark runner: ``python -m mobileforge.bench.host.runner ...``.

Run by :func:`mobileforge.bench.host.repeats.run_host_repeats`, never imported for its side effects.
A separate process is the point: nothing the caller imported, compiled or cached (torch's
thread pools, the ExecuTorch threadpool, warmed allocator, page cache of an earlier load) leaks
into the numbers, and the CPU affinity set here cannot change the caller.

The runner imports the runtimes once and then, for every line read on stdin, forks a child
that benchmarks the artifact and answers with one JSON line: each repeat is a new process that
loads, warms up and times the artifact on its own, without paying the interpreter and imports
(about 1.5 s here) every time. Nothing runs in the parent before a fork (no thread pool, no
tensor op), so a child starts as clean as a fresh interpreter that has imported the same
modules. In each child, order matters and is deliberate:

1. record process start;
2. pin the process to ``threads`` CPUs with ``os.sched_setaffinity`` *before* importing any
   runtime, so every thread a runtime spawns inherits the mask;
3. import the runtime (timed separately, it is not load time);
4. set the runtime's thread count and read it back; a mismatch is an error, because a number
   labelled "2 threads" that ran on 1 (or on all cores, as ExecuTorch does unpinned) is wrong;
5. measure RSS, load the artifact (``load_ms``), run once (``first_inference_ms``), warm up,
   then time ``iterations`` runs with ``time.perf_counter_ns``;
6. answer with exactly one JSON object on the real stdout. Everything else (library chatter
   from C++ included) goes to stderr: fd 1 is redirected to fd 2 at start-up.

The cool-down between repeats is the caller's (:func:`mobileforge.bench.thermal.cool_down`).
"""

from __future__ import annotations

import time

PROCESS_START_NS = time.perf_counter_ns()
PROCESS_START_UNIX = time.time()

import argparse  # noqa: E402  (imports after the start stamp on purpose)
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from mobileforge.bench.stats import summarize_latencies  # noqa: E402  (numpy only, no torch)
from mobileforge.runtime import pte as pte_runtime  # noqa: E402  (imports the runtime when called)
from mobileforge.versions import check_executorch  # noqa: E402  (no torch at import)

#: Seed of the benchmark input; fixed so every run and runtime sees the same tensor.
INPUT_SEED = 0

RUNTIMES = {"ptl": "lite_interpreter", "pte": "executorch"}

#: Other processes' average CPU use on the pinned CPUs above which a result carries a warning.
CONTENTION_WARN_CPUS = 0.1


def _ns_to_ms(ns: int) -> float:
    return ns / 1e6


def _current_rss_mb() -> float | None:
    """Resident set size right now (``VmRSS``), or None where /proc is unavailable."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _peak_rss_mb() -> float:
    """Peak RSS of this process so far; Linux reports ``ru_maxrss`` in KiB (macOS in bytes)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024.0 * 1024.0) if sys.platform == "darwin" else maxrss / 1024.0


def _thread_cpu_ticks() -> dict[int, int]:
    """CPU clock ticks (user + system) consumed so far by each thread of this process."""
    ticks: dict[int, int] = {}
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:  # the thread exited meanwhile
                continue
            ticks[int(tid)] = int(fields[11]) + int(fields[12])  # utime, stime
    except OSError:
        pass
    return ticks


def _per_thread_cpu_ms(before: dict[int, int], after: dict[int, int]) -> list[float]:
    """CPU ms each thread spent between two snapshots, busiest first, idle threads left out."""
    tick_ms = 1000.0 / os.sysconf("SC_CLK_TCK")
    spent = [(after[t] - before.get(t, 0)) * tick_ms for t in after]
    return sorted((ms for ms in spent if ms > 0), reverse=True)


def cpu_ticks(cpus: list[int]) -> tuple[int, int] | None:
    """Busy (user .. softirq, not idle or iowait) and steal clock ticks so far on ``cpus``, all
    processes together (``/proc/stat``); None where it is unreadable."""
    wanted = {f"cpu{c}" for c in cpus}
    busy = steal = 0
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            for line in fh:
                fields = line.split()
                if fields and fields[0] in wanted:
                    # user nice system idle iowait irq softirq steal
                    values = [int(v) for v in fields[1:9]]
                    busy += sum(values[:7]) - values[3] - values[4]
                    steal += values[7]
    except (OSError, ValueError, IndexError):
        return None
    return busy, steal


def busy_seconds(cpus: list[int]) -> float | None:
    """Non-idle CPU seconds so far on ``cpus``, all processes together (``/proc/stat``)."""
    ticks = cpu_ticks(cpus)
    return None if ticks is None else ticks[0] / os.sysconf("SC_CLK_TCK")


def host_info() -> dict[str, Any]:
    """Identify the machine: node name, CPU model (``/proc/cpuinfo``) and CPU count."""
    cpu_model: str | None = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Model") and value.strip():
                    cpu_model = value.strip()
                    break
    except OSError:
        pass
    return {
        "node": platform.node(),
        "cpu_model": cpu_model or platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "allocation": batch_allocation(),
    }


def batch_allocation() -> dict[str, Any] | None:
    """The SLURM job this benchmark runs in, or None: its id, node(s), CPUs and exclusivity.

    Read from ``scontrol show job``: inside a job step the environment only describes the
    step (``SLURM_CPUS_ON_NODE`` is the step's one CPU even in a job holding the whole node).
    ``exclusive`` means no other job could share the node (``--exclusive``).
    """
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return None
    allocation: dict[str, Any] = {"scheduler": "slurm", "job_id": job_id, "cpus": None,
                                  "exclusive": None, "node_list": None}  # fmt: skip
    try:
        shown = subprocess.run(
            ["scontrol", "show", "job", "--oneliner", job_id],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return allocation
    fields = dict(item.split("=", 1) for item in shown.split() if "=" in item)
    if fields.get("NumCPUs", "").isdigit():
        allocation["cpus"] = int(fields["NumCPUs"])
    if "OverSubscribe" in fields:
        allocation["exclusive"] = fields["OverSubscribe"] == "NO"
    allocation["node_list"] = fields.get("NodeList")
    return allocation


def pin_cpus(threads: int) -> list[int]:
    """Restrict this process to the first ``threads`` CPUs it may use; return the new mask.

    Raises ``ValueError`` when fewer CPUs are available than requested: oversubscribing would
    measure contention, not the configured thread count.
    """
    available = sorted(os.sched_getaffinity(0))
    if threads > len(available):
        raise ValueError(
            f"{threads} threads requested but only {len(available)} CPU(s) are available to "
            f"this process ({available}); lower the device's 'threads'"
        )
    os.sched_setaffinity(0, available[:threads])
    return sorted(os.sched_getaffinity(0))


def _expected_inputs_hint(loaded: pte_runtime.LoadedPte | None) -> str:
    """Describe what an ExecuTorch program expects, to turn error 0x10 into something useful."""
    if loaded is None:
        return ""
    try:
        return f" (the program was exported for input sizes {loaded.input_shapes})"
    except Exception:  # metadata is best effort; the original error is what matters
        return ""


def apply_threads(fmt: str, threads: int) -> tuple[int, str, int, str | None]:
    """Set the runtime's thread count and read it back; a mismatch is an error.

    Returns (threads applied, how they were set, torch's thread count, inter-op note).
    """
    import torch

    torch.set_num_threads(threads)
    interop_note: str | None = None
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError as exc:  # only possible once inter-op work has started
        interop_note = str(exc)
    torch_threads = torch.get_num_threads()
    thread_control = "torch.set_num_threads"
    if fmt == "ptl":
        threads_applied = torch_threads
    else:
        threads_applied = pte_runtime.set_pte_threads(threads)  # read back from the pool
        thread_control = "executorch threadpool (_unsafe_reset_threadpool)"
    if threads_applied != threads:
        raise RuntimeError(
            f"{RUNTIMES[fmt]} runs {threads_applied} thread(s) after asking for {threads} "
            f"(via {thread_control}); refusing to report a mislabelled measurement"
        )
    return threads_applied, thread_control, torch_threads, interop_note


def select_engine(fmt: str, engine: str | None) -> str | None:
    """Set torch's quantized engine for a ``ptl`` (before loading: int8 weights are repacked
    for it at load); returns the engine in use, None for a ``pte`` (ExecuTorch ignores it)."""
    if fmt != "ptl":
        return None
    import torch

    if engine is not None:
        supported = list(torch.backends.quantized.supported_engines)
        if engine not in supported:
            raise ValueError(
                f"quantized engine {engine!r} is not in this torch build (supported: "
                f"{', '.join(supported)})"
            )
        torch.backends.quantized.engine = engine
    return torch.backends.quantized.engine


def load_artifact(
    artifact: Path, fmt: str
) -> tuple[Callable[[Any], Any], pte_runtime.LoadedPte | None]:
    """Load ``artifact`` in its runtime; returns a one-input inference call (and the loaded
    ExecuTorch program, for error messages)."""
    import torch.jit.mobile

    if fmt == "ptl":
        module = torch.jit.mobile._load_for_lite_interpreter(str(artifact))
        return module, None
    program = pte_runtime.load_pte(artifact)

    def infer(x: Any) -> Any:
        return program([x])

    return infer, program


def benchmark_input(input_shape: list[int]) -> Any:
    """The benchmark's input tensor: the same seeded values in every run and runtime."""
    import torch

    generator = torch.Generator().manual_seed(INPUT_SEED)
    return torch.rand(input_shape, generator=generator, dtype=torch.float32)


def _import_runtime(fmt: str) -> tuple[float, str | None]:
    """Import the runtime ``fmt`` runs in (free after a serving parent imported it); returns
    the time it took in ms and the ExecuTorch version (None for ``ptl``)."""
    t0 = time.perf_counter_ns()
    import torch  # noqa: F401
    import torch.jit.mobile  # noqa: F401  (not imported by ``import torch``)

    executorch_version: str | None = None
    if fmt == "pte":
        pte_runtime.bindings()  # part of import, not of load
        executorch_version = check_executorch()
    return _ns_to_ms(time.perf_counter_ns() - t0), executorch_version


def _first_inference(
    infer: Callable[[Any], Any],
    x: Any,
    input_shape: list[int],
    loaded: pte_runtime.LoadedPte | None,
) -> float:
    """Run once, before warm-up: the first inference's time in ms."""
    t = time.perf_counter_ns()
    try:
        infer(x)
    except RuntimeError as exc:
        raise RuntimeError(
            f"first inference failed with input shape {list(input_shape)}"
            f"{_expected_inputs_hint(loaded)}: {exc}"
        ) from exc
    return _ns_to_ms(time.perf_counter_ns() - t)


def _timed_loop(
    infer: Callable[[Any], Any], x: Any, iterations: int, affinity: list[int]
) -> tuple[list[float], dict[str, Any]]:
    """Time ``iterations`` runs; returns the samples (ms) and the evidence about the loop.

    CPU time over wall time shows how many cores the runtime kept busy (about 1 for one
    thread, up to N for N; OpenMP spin-waiting counts as busy), per-thread CPU time (10 ms
    ticks) shows how many threads did the work, and involuntary context switches, the load
    average and other processes' CPU time on the pinned CPUs show competition.
    """
    load_start = os.getloadavg()
    usage_start = resource.getrusage(resource.RUSAGE_SELF)
    ticks_start = _thread_cpu_ticks()
    busy_start = busy_seconds(affinity)
    cpu_start, wall_start = time.process_time_ns(), time.perf_counter_ns()
    samples_ms: list[float] = []
    for _ in range(iterations):
        t = time.perf_counter_ns()
        infer(x)
        samples_ms.append(_ns_to_ms(time.perf_counter_ns() - t))
    cpu_ms = _ns_to_ms(time.process_time_ns() - cpu_start)
    wall_ms = _ns_to_ms(time.perf_counter_ns() - wall_start)
    ticks_end = _thread_cpu_ticks()
    busy_end = busy_seconds(affinity)
    usage_end = resource.getrusage(resource.RUSAGE_SELF)
    load_end = os.getloadavg()
    # CPU time other processes took on our CPUs during the timed loop, in CPUs (0.5 = half a
    # core on average). Anything sizeable means the samples measured sharing, not the model.
    other_cpus: float | None = None
    if busy_start is not None and busy_end is not None and wall_ms > 0:
        other_cpus = max(0.0, (busy_end - busy_start) - cpu_ms / 1000.0) / (wall_ms / 1000.0)
    return samples_ms, {
        "wall_ms": wall_ms,
        "process_cpu_ms": cpu_ms,
        "cpu_per_wall": cpu_ms / wall_ms if wall_ms > 0 else None,
        "per_thread_cpu_ms": _per_thread_cpu_ms(ticks_start, ticks_end),
        "involuntary_context_switches": usage_end.ru_nivcsw - usage_start.ru_nivcsw,
        "other_processes_cpus": other_cpus,
        "loadavg_1min_start": load_start[0],
        "loadavg_1min_end": load_end[0],
    }


def _contention_warnings(other_cpus: float | None, threads: int) -> list[str]:
    """A warning (also printed) when other processes used the pinned CPUs during the loop."""
    if other_cpus is None or other_cpus <= CONTENTION_WARN_CPUS:
        return []
    warning = (
        f"other processes used {other_cpus:.2f} of the {threads} pinned CPU(s) during the "
        "timed runs; latencies include contention (run benchmarks on an otherwise idle host)"
    )
    print(f"mobileforge: warning: {warning}", file=sys.stderr)
    return [warning]


def _process_record(executorch_version: str | None) -> dict[str, Any]:
    """Versions, machine and this process's identity and start-up time."""
    import torch

    return {
        "torch_version": torch.__version__,
        "executorch_version": executorch_version,
        "python_version": platform.python_version(),
        "host": host_info(),
        "pid": os.getpid(),
        "process_start_unix": PROCESS_START_UNIX,
        "startup_to_ready_ms": _ns_to_ms(time.perf_counter_ns() - PROCESS_START_NS),
    }


def run(
    artifact: Path,
    fmt: str,
    input_shape: list[int],
    threads: int,
    warmup: int,
    iterations: int,
    engine: str | None = None,
) -> dict[str, Any]:
    """Benchmark one artifact in this process (see the module docstring for the order).

    ``engine`` sets ``torch.backends.quantized.engine`` before a ``ptl`` is loaded: int8
    weights are repacked for the current engine at load, and the engine decides the kernels
    (QNNPACK vs x86 is several times apart on x86). ExecuTorch ignores it.
    """
    if fmt not in RUNTIMES:
        raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(RUNTIMES)}")
    affinity = pin_cpus(threads)
    import_ms, executorch_version = _import_runtime(fmt)
    import torch

    threads_applied, thread_control, torch_threads, interop_note = apply_threads(fmt, threads)
    notes: dict[str, str] = {}
    quantized_engine = select_engine(fmt, engine)
    if quantized_engine is None:
        notes["quantized_engine"] = "ExecuTorch kernels do not use torch's quantized engine"

    rss_before_load_mb = _current_rss_mb()
    peak_rss_before_load_mb = _peak_rss_mb()
    t = time.perf_counter_ns()
    infer, loaded = load_artifact(artifact, fmt)
    load_ms = _ns_to_ms(time.perf_counter_ns() - t)
    x = benchmark_input(input_shape)
    with torch.inference_mode():
        first_inference_ms = _first_inference(infer, x, input_shape, loaded)
        for _ in range(warmup):
            infer(x)
        samples_ms, timed_loop = _timed_loop(infer, x, iterations, affinity)

    # Threads must not have drifted during the run (a runtime resetting its pool on load).
    after = torch.get_num_threads() if fmt == "ptl" else pte_runtime.get_pte_threads()
    if after != threads_applied:
        raise RuntimeError(f"thread count changed during the run: {threads_applied} -> {after}")
    warnings = _contention_warnings(timed_loop["other_processes_cpus"], threads)
    if interop_note:
        notes["interop_threads"] = interop_note
    if rss_before_load_mb is None:
        notes["rss_before_load_mb"] = "/proc/self/status not readable on this platform"

    return {
        "format": fmt,
        "runtime": RUNTIMES[fmt],
        "artifact": str(artifact),
        "artifact_bytes": artifact.stat().st_size,
        "input_shape": list(input_shape),
        "input": f"torch.rand seed={INPUT_SEED} float32",
        "warmup": warmup,
        "iterations": iterations,
        # No pause inside the process any more: the cool-down runs between repeats (see
        # run_host_repeats). The key stays, at the 0.0 every recorded result has.
        "cooldown_s": 0.0,
        "quantized_engine": quantized_engine,
        "threads_requested": threads,
        "threads_applied": threads_applied,
        "thread_control": thread_control,
        "torch_threads": torch_threads,
        "torch_interop_threads": torch.get_num_interop_threads(),
        "affinity": affinity,
        "import_ms": import_ms,
        "load_ms": load_ms,
        "first_inference_ms": first_inference_ms,
        "latency_ms": summarize_latencies(samples_ms),
        "timed_loop": timed_loop,
        "rss_before_load_mb": rss_before_load_mb,
        "peak_rss_before_load_mb": peak_rss_before_load_mb,
        "peak_rss_mb": _peak_rss_mb(),
        **_process_record(executorch_version),
        "warnings": warnings,
        "null_reasons": notes,
        "samples_ms": samples_ms,
    }


def _shape(text: str) -> list[int]:
    try:
        dims = [int(p) for p in text.split(",") if p.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: {exc}") from exc
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: need positive integers")
    return dims


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", required=True, type=Path)
    p.add_argument("--format", required=True, choices=sorted(RUNTIMES), dest="fmt")
    p.add_argument("--input-shape", required=True, type=_shape, help="e.g. 1,3,32,32")
    p.add_argument("--threads", required=True, type=int)
    p.add_argument("--warmup", required=True, type=int)
    p.add_argument("--iterations", required=True, type=int)
    p.add_argument("--engine", default=None, help="torch quantized engine for ptl, e.g. x86")
    return p


def _import_runtimes(fmt: str) -> None:
    """What a forked run must find imported: torch, the lite interpreter, ExecuTorch's bindings."""
    import torch  # noqa: F401
    import torch.jit.mobile  # noqa: F401

    if fmt == "pte":
        pte_runtime.bindings()


def _forked_run(args: argparse.Namespace, result_fd: int) -> int:
    """Run once in a forked child; the child writes one JSON line to ``result_fd``.

    Returns the child's exit status (0 when it answered).
    """
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a new process for this run
        global PROCESS_START_NS, PROCESS_START_UNIX
        PROCESS_START_NS, PROCESS_START_UNIX = time.perf_counter_ns(), time.time()
        os.close(reader)
        status = 1
        try:
            result = _run_args(args)
            with os.fdopen(writer, "w", encoding="utf-8") as out:
                out.write(json.dumps({**result, "process": "forked"}) + "\n")
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(status)
    os.close(writer)
    with os.fdopen(reader, encoding="utf-8") as answer:
        line = answer.read()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not line.strip():
        line = json.dumps({"error": f"benchmark process exited with {code} (traceback above)"})
    os.write(result_fd, (line.strip() + "\n").encode())
    return code


def _run_args(args: argparse.Namespace) -> dict[str, Any]:
    return run(
        args.artifact,
        args.fmt,
        args.input_shape,
        args.threads,
        args.warmup,
        args.iterations,
        args.engine,
    )


def serve(args: argparse.Namespace, result_fd: int) -> int:
    """One forked run per line on stdin, each answered by one JSON line; ends at end of input.

    The first line out says the imports are done (``{"ready": true, "import_ms": ...}``).
    """
    started = time.perf_counter_ns()
    _import_runtimes(args.fmt)
    ready = {"ready": True, "import_ms": _ns_to_ms(time.perf_counter_ns() - started)}
    os.write(result_fd, (json.dumps(ready) + "\n").encode())
    for _request in sys.stdin:
        _forked_run(args, result_fd)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, then serve: one forked run per stdin line, each answered with one JSON
    line on the original stdout."""
    sys.stdout.flush()
    result_fd = os.dup(1)
    os.dup2(2, 1)  # C++ and Python chatter on fd 1 now lands on stderr
    sys.stdout = sys.stderr
    return serve(_parser().parse_args(argv), result_fd)


if __name__ == "__main__":
    sys.exit(main())
