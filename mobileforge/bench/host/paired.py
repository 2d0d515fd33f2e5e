"""Host artifacts held loaded in processes of their own, timed one turn at a time.

The host side of a paired comparison (:mod:`mobileforge.bench.compare`). This process imports
the runtimes once (torch, the lite interpreter, ExecuTorch's bindings) and runs no operation;
then, per artifact, it forks a child that pins itself to the same CPUs as every other child,
sets the runtime's threads (checked, as in :mod:`mobileforge.bench.host.runner`), loads the
artifact once, runs it once and warms it up, and waits. A turn is one request down that
child's pipe: ``turn_warmup`` untimed runs (another process just ran on these CPUs and its data
left the caches), then ``runs`` timed ones; the answer carries the timings and how much CPU
other processes took on the pinned CPUs meanwhile. The coordinator asks one child at a time,
so only one artifact runs at any moment.

A child dies with this process: it reads its requests from a pipe whose other end this process
holds (end of file: it exits), and on Linux it also asks the kernel for SIGKILL when its parent
dies, so a killed comparison leaves no process behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobileforge.bench.host import runner as host_runner

#: How long a child may take to load and warm up, or to answer one turn, before it is killed.
TIMEOUT_S = 600.0


@dataclass(frozen=True)
class HostArtifact:
    """One artifact to hold loaded: its file, format, input shape and (int8 .ptl) engine."""

    path: str
    fmt: str
    input_shape: list[int]
    engine: str | None = None


def import_runtimes(formats: set[str]) -> None:
    """Import what every child needs, once, in this process (no operation is run)."""
    import torch  # noqa: F401
    import torch.jit.mobile  # noqa: F401

    if "pte" in formats:
        host_runner.pte_runtime.bindings()


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (best effort elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _child(artifact: HostArtifact, threads: int, warmup: int, requests: int, answers: int) -> int:
    """The body of one held artifact's process; returns its exit status."""
    _die_with_parent()
    with os.fdopen(requests, encoding="utf-8") as inbox, os.fdopen(answers, "w") as outbox:

        def answer(message: dict[str, Any]) -> None:
            outbox.write(json.dumps(message) + "\n")
            outbox.flush()

        try:
            affinity = host_runner.pin_cpus(threads)
            applied, control, _, _ = host_runner.apply_threads(artifact.fmt, threads)
            engine = host_runner.select_engine(artifact.fmt, artifact.engine)
            started = time.perf_counter_ns()
            infer, _ = host_runner.load_artifact(Path(artifact.path), artifact.fmt)
            load_ms = (time.perf_counter_ns() - started) / 1e6
            x = host_runner.benchmark_input(artifact.input_shape)
            import torch

            with torch.inference_mode():
                for _ in range(1 + warmup):
                    infer(x)
                answer(
                    {
                        "ready": True,
                        "pid": os.getpid(),
                        "affinity": affinity,
                        "threads_applied": applied,
                        "thread_control": control,
                        "quantized_engine": engine,
                        "load_ms": load_ms,
                    }
                )
                for line in inbox:
                    runs, turn_warmup = (int(v) for v in line.split())
                    answer(_turn(infer, x, threads, runs, turn_warmup))
        except Exception as error:
            traceback.print_exc()
            with contextlib.suppress(OSError):
                answer({"error": f"{type(error).__name__}: {error}"})
            return 1
    return 0


def runqueue_wait_s() -> float | None:
    """Seconds this process's threads have waited, runnable, for a CPU (``schedstat``).

    While a turn runs, its process is always runnable, so any time another task holds one of
    its CPUs shows up here, to the nanosecond; ``/proc/stat``'s busy ticks (10 ms) cannot
    resolve turns of a few milliseconds. None where the kernel keeps no schedstats.
    """
    total = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(FileNotFoundError):  # a thread that exited meanwhile
                with open(f"/proc/self/task/{tid}/schedstat", encoding="ascii") as fh:
                    total += int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return total / 1e9


def _turn(infer: Any, x: Any, threads: int, runs: int, turn_warmup: int) -> dict[str, Any]:
    """One turn: untimed warm-up, then ``runs`` timed runs and the other processes' CPU."""
    for _ in range(turn_warmup):
        infer(x)
    waited_start = runqueue_wait_s()
    wall_start = time.perf_counter_ns()
    samples = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        infer(x)
        samples.append((time.perf_counter_ns() - t) / 1e6)
    wall_s = (time.perf_counter_ns() - wall_start) / 1e9
    waited_end = runqueue_wait_s()
    other: float | None = None
    if waited_start is not None and waited_end is not None and wall_s > 0:
        # CPU others took from this turn, in CPUs (0.5: half of one CPU on average).
        other = (waited_end - waited_start) / wall_s / threads
    return {"samples_ms": samples, "other_cpus": other}


def cache_neighbours(cpus: list[int]) -> list[int]:
    """The other CPUs that share a last-level cache with ``cpus`` (their load slows ours: the
    cache and memory bandwidth are shared; on this 2-CPU VM a busy neighbour made the same
    artifact's turns up to 30 % slower while its own CPU lost no time to anyone)."""
    shared: set[int] = set()
    for cpu in cpus:
        caches = Path(f"/sys/devices/system/cpu/cpu{cpu}/cache")
        levels = sorted(caches.glob("index[0-9]*"), key=lambda p: int(p.name[5:]))
        if not levels:
            continue
        with contextlib.suppress(OSError, ValueError):
            shared |= _cpu_list((levels[-1] / "shared_cpu_list").read_text())
    return sorted(shared - set(cpus))


def _cpu_list(text: str) -> set[int]:
    """``0-3,8`` -> {0, 1, 2, 3, 8}."""
    found: set[int] = set()
    for part in text.strip().split(","):
        if part:
            low, _, high = part.partition("-")
            found |= set(range(int(low), int(high or low) + 1))
    return found


class RoundLoad:
    """What other work did during one round, read from ``/proc/stat`` around it.

    ``steal``: the share of the pinned CPUs the hypervisor gave to other machines; ``neighbours``:
    how busy the CPUs sharing their last-level cache were (0.5: half of one such CPU on
    average). Both come in 10 ms ticks, so a round shorter than :data:`MIN_WINDOW_S` is not
    judged by them (None).
    """

    MIN_WINDOW_S = 0.1

    def __init__(self, pinned: list[int]) -> None:
        self.pinned = pinned
        self.neighbours = cache_neighbours(pinned)
        self.tick_s = 1.0 / os.sysconf("SC_CLK_TCK")

    def start(self) -> None:
        self.started = time.perf_counter()
        self.before = (host_runner.cpu_ticks(self.pinned), host_runner.cpu_ticks(self.neighbours))

    def stop(self) -> dict[str, float | None]:
        wall = time.perf_counter() - self.started
        after = (host_runner.cpu_ticks(self.pinned), host_runner.cpu_ticks(self.neighbours))
        if wall < self.MIN_WINDOW_S or None in (*self.before, *after):
            return {"steal": None, "neighbours": None}
        (_, steal0), (busy0, _) = self.before
        (_, steal1), (busy1, _) = after
        return {
            "steal": (steal1 - steal0) * self.tick_s / wall / len(self.pinned),
            "neighbours": (busy1 - busy0) * self.tick_s / wall,
        }


class HeldArtifacts:
    """Forked processes, ``processes`` per artifact, each holding its artifact loaded (module
    docstring).

    Use as a context manager; :meth:`turn` times one artifact, in its processes by turns (the
    n-th turn of an artifact goes to its process n mod ``processes``). One process's speed
    depends on where its memory landed: two processes holding the same file differed by up to
    8 % for as long as they lived, so an artifact timed in one process only carries that bias
    into every ratio; spread over several, it averages out. Artifacts are addressed by their
    position, so the same file may be held twice (an A/A control).
    """

    def __init__(
        self, artifacts: list[HostArtifact], threads: int, warmup: int, processes: int = 1
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes per artifact must be >= 1, got {processes}")
        self.artifacts = artifacts
        self.threads = threads
        self.warmup = warmup
        self.processes = processes
        self.physical = [a for a in artifacts for _ in range(processes)]
        self.children: dict[int, tuple[int, Any, Any]] = {}  # pid, request pipe, answer pipe
        self.turns = [0] * len(artifacts)
        self.ready: list[dict[str, Any]] = []  # per artifact: its first process's, median load

    def __enter__(self) -> HeldArtifacts:
        import_runtimes({artifact.fmt for artifact in self.artifacts})
        # Started round-robin (the first process of every artifact, then the second ...): in a
        # default run beside another, the artifact whose processes all started first ran 8 %
        # slower than its own A/A copy started last, steadily; interleaved, whatever the order
        # of start does to a process falls on every artifact alike.
        count = len(self.artifacts)
        order = [i * self.processes + k for k in range(self.processes) for i in range(count)]
        started: dict[int, dict[str, Any]] = {}
        try:
            for physical in order:
                started[physical] = self._start(physical)
        except BaseException:
            self.close()
            raise
        for index in range(count):
            own = [started[index * self.processes + k] for k in range(self.processes)]
            load_ms = statistics.median(ready["load_ms"] for ready in own)
            self.ready.append({**own[0], "load_ms": load_ms, "pids": [r["pid"] for r in own]})
        return self

    def _start(self, physical: int) -> dict[str, Any]:
        """Fork process ``physical`` (artifact ``physical // processes``); its ready answer."""
        request_r, request_w = os.pipe()
        answer_r, answer_w = os.pipe()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child never returns into the caller's code
            status = 1
            try:
                os.close(request_w)
                os.close(answer_r)
                for child in self.children.values():  # siblings' pipes are not ours
                    child[1].close()
                    child[2].close()
                status = _child(
                    self.physical[physical], self.threads, self.warmup, request_r, answer_w
                )
            finally:
                sys.stderr.flush()
                os._exit(status)
        os.close(request_r)
        os.close(answer_w)
        requests = os.fdopen(request_w, "w", encoding="utf-8")
        answers = os.fdopen(answer_r, encoding="utf-8")
        self.children[physical] = (pid, requests, answers)
        return self._answer(physical, "load and warm-up")

    def _answer(self, index: int, what: str) -> dict[str, Any]:
        pid, _, answers = self.children[index]
        path = self.physical[index].path
        ready, _, _ = select.select([answers], [], [], TIMEOUT_S)
        if not ready:
            raise RuntimeError(f"{path}: no answer to {what} within {TIMEOUT_S:g} s")
        line = answers.readline()
        if not line:
            raise RuntimeError(f"{path}: its process {pid} exited during {what} (see the log)")
        message = json.loads(line)
        if "error" in message:
            raise RuntimeError(f"{path}: {what} failed: {message['error']}")
        return message

    def round_load(self) -> RoundLoad:
        """The load probe of a round on the CPUs these processes are pinned to."""
        return RoundLoad(self.ready[0]["affinity"])

    def turn(self, index: int, runs: int, turn_warmup: int) -> dict[str, Any]:
        """Time artifact ``index`` for one turn: ``{"samples_ms": [...], "other_cpus": x}``."""
        process = index * self.processes + self.turns[index] % self.processes
        self.turns[index] += 1
        _, requests, _ = self.children[process]
        try:
            requests.write(f"{runs} {turn_warmup}\n")
            requests.flush()
        except BrokenPipeError:
            raise RuntimeError(f"{self.physical[process].path}: its process exited") from None
        return self._answer(process, "a timed turn")

    def close(self) -> None:
        for pid, requests, answers in self.children.values():
            with contextlib.suppress(OSError):
                requests.close()  # end of file: the child leaves its loop and exits
            answers.close()
            deadline = time.monotonic() + 10
            while True:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            if not done:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        self.children = {}

    def __exit__(self, *exc: object) -> None:
        self.close()
