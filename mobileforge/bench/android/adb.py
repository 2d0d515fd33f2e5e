"""Benchmark an artifact on an Android phone over adb: ``repeats`` runner processes.

The phone runs a native benchmark binary:

* ``ptl``: PyTorch's ``speed_benchmark_torch`` (``binaries/speed_benchmark_torch.cc``, built
  with ``BUILD_LITE_INTERPRETER`` so it loads with ``_load_for_mobile``). Flags used:
  ``--model --input_dims --input_type=float --warmup --iter --report_pep=true``; with
  ``--report_pep`` it prints one ``PyTorchObserver {... "unit": "us", "value": "<t>"}`` line
  per timed iteration (``<t>`` is a float printed by iostream, e.g. ``"1234"`` or
  ``"1.23457e+06"``). It has no thread flag and reports neither load time nor first
  inference, so those are recorded as null with the reason.
* ``pte``: ExecuTorch's ``examples/portable/executor_runner`` (v1.3 or later: older ones reject
  ``--print_output``), which takes ``--model_path --num_executions --cpu_threads
  --print_output=none`` and logs ``Model loaded in <x> ms.``, ``Resetting threadpool with num
  threads = <n>`` and one ``Iteration <i> of <n>: <x> ms`` per execution. Android builds log to
  logcat (tag ``ExecuTorch``), POSIX builds to stderr; both are read. It has no warm-up flag,
  so one process runs ``1 + warmup + iterations`` executions: the first is the first inference,
  the next ``warmup`` are discarded, the rest are the samples. It fills inputs with ones in the
  shapes stored in the program, so ``input_shape`` is informational for ``pte``.

Round trips, per job: the server's device list, one shell command sweeping stale runs and
listing the push cache (:mod:`~mobileforge.bench.android.pushcache`; runner and artifact are
pushed only when that content is not on the phone yet), then one shell command per run that
reads thermal zones and CPU frequencies, runs the runner, reads them again and removes its
folder. Device properties and shell capabilities are probed once per phone and workflow run
(:mod:`~mobileforge.bench.android.probes`, :mod:`~mobileforge.bench.runstate`).

Threads: the runner is started under ``taskset`` with a mask of ``threads`` CPUs (the fastest
cores by ``cpuinfo_max_freq``); ``executor_runner`` also gets ``--cpu_threads``. Without
``taskset`` (or a CPU list) it runs unpinned, with a note. Peak memory comes from ``time -v``
(toybox or GNU) when the phone has one.

Faults: a cut connection (:class:`DeviceDisconnected`) is retried up to ``retries`` times per job
after waiting for the phone to come back (``timeouts.wait_for_device_s``); a phone that does not
come back, or hangs, is marked gone for the rest of the run, so its remaining jobs fail at once.
A runner that crashes is not retried: its exit code and output tail are the error.

Every string sent to the device shell goes through ``shlex.quote``; paths and flags included.
"""

from __future__ import annotations

import json
import posixpath
import re
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobileforge.bench import check_request, tail, thermal
from mobileforge.bench.android import probes as probing
from mobileforge.bench.android import pushcache
from mobileforge.bench.android.adbconn import (
    AdbBenchmarkError,
    AdbServerUnreachable,
    DeviceDisconnected,
    DeviceGone,
    DeviceHung,
    DeviceNotConnected,
    Phone,
)
from mobileforge.bench.runstate import RunState
from mobileforge.bench.stats import combine_runs, summarize_latencies

__all__ = [
    "AdbBenchmarkError",
    "AdbServerUnreachable",
    "DeviceDisconnected",
    "DeviceGone",
    "DeviceHung",
    "DeviceNotConnected",
    "run_adb_benchmark",
]

RUNNERS = {"ptl": "speed_benchmark_torch", "pte": "executor_runner"}
RUNNER_SOURCES = {
    "ptl": "PyTorch's binaries/speed_benchmark_torch.cc built for Android with "
    "BUILD_LITE_INTERPRETER=1 (scripts/build_android.sh)",
    "pte": "ExecuTorch's examples/portable/executor_runner (v1.3+) built for Android with "
    "-DEXECUTORCH_BUILD_EXECUTOR_RUNNER=ON -DEXECUTORCH_BUILD_XNNPACK=ON",
}
DEFAULT_REMOTE_DIR = "/data/local/tmp/mobileforge"
DEFAULT_TIMEOUTS = {"command_s": 30.0, "run_s": 600.0, "wait_for_device_s": 60.0}
#: How long a job re-checks a phone an earlier job of the run found gone or hung.
RECHECK_S = 2.0
OUTPUT_TAIL_CHARS = 3000

_PEP_RE = re.compile(r"PyTorchObserver\s+(\{.*\})")
_ET_ITER_RE = re.compile(r"Iteration (\d+) of (\d+): ([0-9.eE+-]+) ms")
_ET_LOAD_RE = re.compile(r"Model loaded in ([0-9.eE+-]+) ms")
_ET_THREADS_RE = re.compile(r"Resetting threadpool with num threads = (-?\d+)")
_OLD_RUNNER_RE = re.compile(r"unknown command line flag '?print_output")

_q = pushcache.q


def _tail(text: str) -> str:
    return tail(text, OUTPUT_TAIL_CHARS)


def parse_pep_samples(output: str) -> list[float]:
    """Latencies in ms from ``speed_benchmark_torch --report_pep=true`` output.

    Only ``{"type": "NET", "metric": "latency"}`` records count. Values are strings in the
    unit named by ``unit`` (the binary writes ``us``).
    """
    scale = {"us": 1e-3, "ms": 1.0, "ns": 1e-6}
    samples: list[float] = []
    for match in _PEP_RE.finditer(output):
        try:
            record = json.loads(match.group(1))
        except json.JSONDecodeError as exc:
            raise AdbBenchmarkError(f"unparsable PyTorchObserver line: {match.group(0)}") from exc
        if record.get("type") != "NET" or record.get("metric") != "latency":
            continue
        unit = record.get("unit")
        if unit not in scale:
            raise AdbBenchmarkError(f"unknown latency unit {unit!r} in {match.group(0)}")
        samples.append(float(record["value"]) * scale[unit])
    return samples


def parse_executor_runner(output: str) -> dict[str, Any]:
    """Per-execution times (ms, in order), load time and thread count from executor_runner."""
    times: dict[int, float] = {}
    for match in _ET_ITER_RE.finditer(output):
        times[int(match.group(1))] = float(match.group(3))
    load = _ET_LOAD_RE.findall(output)
    threads = _ET_THREADS_RE.findall(output)
    return {
        "iterations_ms": [times[i] for i in sorted(times)],
        "load_ms": float(load[-1]) if load else None,
        "threads": int(threads[-1]) if threads else None,
    }


def _runner_args(
    fmt: str, model: str, input_shape: list[int], threads: int, warmup: int, iterations: int
) -> list[str]:
    if fmt == "ptl":
        return [
            f"--model={model}",
            f"--input_dims={','.join(str(d) for d in input_shape)}",
            "--input_type=float",
            f"--warmup={warmup}",
            f"--iter={iterations}",
            "--report_pep=true",
        ]
    return [
        f"--model_path={model}",
        f"--num_executions={1 + warmup + iterations}",
        f"--cpu_threads={threads}",
        "--print_output=none",
    ]


def _run_command(mark: str, run_dir: str, invocation: str, fmt: str) -> str:
    """One round trip: snapshot, runner (exit code and device-clock times), snapshot, clean up.

    Runner stdout lands between the ``t0`` and ``rc`` markers, its stderr on the stderr
    channel; the markers carry a random token, so no runner output can fake them.
    """
    snap = thermal.SNAPSHOT_COMMAND
    parts = [
        *(["logcat -c 2>/dev/null"] if fmt == "pte" else []),
        f"echo {mark}before",
        snap,
        f"mkdir -p {_q(run_dir)} && cd {_q(run_dir)} && echo {mark}t0 $(date +%s.%N) && "
        f"{invocation}",
        f"printf '\\n{mark}rc %s\\n' \"$?\"",
        f"echo {mark}t1 $(date +%s.%N)",
        f"echo {mark}after",
        snap,
        *([f"echo {mark}logcat", "logcat -d -s ExecuTorch:I 2>/dev/null"] if fmt == "pte" else []),
        f"cd / && rm -rf {_q(run_dir)}",
        f"echo {mark}end",
    ]
    return "; ".join(parts)


def _split_run_output(stdout: str, mark: str) -> dict[str, Any]:
    """Sections and marker values (``t0``, ``rc``, ``t1``) of a run command's stdout."""
    texts: dict[str, list[str]] = {}
    values: dict[str, str] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith(mark):
            name, _, value = line[len(mark) :].partition(" ")
            values[name] = value.strip()
            current = texts.setdefault(name, [])
        elif current is not None:
            current.append(line)
    return {"text": {k: "\n".join(v) for k, v in texts.items()}, "values": values}


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


class _Job:
    """One benchmark job on one phone: the steps of :func:`run_adb_benchmark`."""

    def __init__(
        self,
        phone: Phone,
        state: RunState,
        timeouts: Mapping[str, float],
        job: str,
    ) -> None:
        self.phone = phone
        self.state = state
        self.timeouts = {**DEFAULT_TIMEOUTS, **timeouts}
        self.job = job
        self.round_trips = 0

    def shell(
        self,
        command: str,
        timeout_s: float | None = None,
        what: str | None = None,
        heartbeat: bool = False,
    ) -> Any:
        self.round_trips += 1
        heartbeat_s = self.timeouts["command_s"] if heartbeat else None
        return self.phone.shell(command, timeout_s or self.timeouts["command_s"], what, heartbeat_s)

    def check_gone(self) -> None:
        """Fail at once if an earlier job of this run found the phone gone and it still is."""
        gone = self.state.gone()
        if gone is None:
            return
        try:
            back = self.phone.state() == "device"
            back = back and self.phone.shell("echo ok", RECHECK_S).stdout.strip() == "ok"
        except AdbBenchmarkError:
            back = False
        if back:
            self.state.clear_gone()
            return
        since = time.strftime("%H:%M:%S", time.localtime(gone["since_unix"]))
        raise DeviceGone(
            f"phone {self.phone.where} has been gone since {since} (found by {gone['job']}: "
            f"{gone['reason']}); failing fast instead of waiting for it again"
        )

    def mark_gone(self, error: AdbBenchmarkError) -> None:
        self.state.mark_gone(str(error), self.job)

    def probe(self) -> dict[str, Any]:
        cached = self.state.probe()
        if cached is not None:
            return cached
        result = self.shell(probing.PROBE_COMMAND)
        found = probing.parse_probe(result.stdout)
        self.state.save_probe(found)
        return found

    def recover(self, error: DeviceDisconnected) -> float:
        """After a cut connection: wait for the phone (bounded) or mark it gone."""
        print(f"mobileforge: {error}; waiting for the phone", file=sys.stderr, flush=True)
        try:
            return self.phone.wait_for_device(self.timeouts["wait_for_device_s"])
        except DeviceGone as gone:
            self.mark_gone(gone)
            raise DeviceGone(f"{gone} after: {error}") from error

    def hung(self, error: DeviceHung, kill_pattern: str | None = None) -> AdbBenchmarkError:
        """A command timed out: is the phone hung (mark it gone) or only the runner slow?"""
        try:
            alive = not error.confirmed and (
                self.phone.shell("echo ok", self.timeouts["command_s"]).stdout.strip() == "ok"
            )
        except AdbBenchmarkError:
            alive = False
        if not alive:
            self.mark_gone(error)
            return error
        if kill_pattern:
            try:
                self.phone.shell(f"pkill -f {_q(kill_pattern)}", self.timeouts["command_s"])
            except AdbBenchmarkError:
                pass
        return AdbBenchmarkError(
            f"{error}; the phone still answers, so the runner itself did not finish within "
            f"benchmark.timeouts.run_s ({self.timeouts['run_s']:g} s)"
        )


@dataclass
class _Plan:
    """One phone job as set up: the request, what the probe found and the runner's command."""

    fmt: str
    artifact: Path
    runner: Path
    input_shape: list[int]
    threads: int
    warmup: int
    iterations: int
    cooldown: dict[str, Any]
    adb_server: str
    base: str  # the phone folder holding the push cache and the run folders
    probe: dict[str, Any]
    device_info: dict[str, Any]
    cpus: list[int] | None  # None: unpinned
    files: list[tuple[Path, str, int, str]]  # (local path, name, mode, sha256): runner, artifact
    remote: list[str]  # where ``files`` are in the push cache
    invocation: str  # the runner's command line on the phone

    @property
    def kill_pattern(self) -> str:
        """What ``pkill -f`` matches to stop this job's runner."""
        return pushcache.process_pattern(self.remote[0])


@dataclass
class _Outcome:
    """What a phone job gathered while it ran: the runs and what it noted on the way."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)  # what was not in the push cache yet
    retries_used: int = 0
    warnings: list[str] = field(default_factory=list)
    null_reasons: dict[str, str] = field(default_factory=dict)


def run_adb_benchmark(
    artifact: str | Path,
    fmt: str,
    serial: str,
    runner: str | Path,
    input_shape: list[int],
    threads: int,
    warmup: int,
    iterations: int,
    adb_host: str = "127.0.0.1",
    adb_port: int = 5037,
    remote_dir: str = DEFAULT_REMOTE_DIR,
    repeats: int = 1,
    cooldown: Mapping[str, Any] | None = None,
    timeouts: Mapping[str, float] | None = None,
    retries: int = 0,
    state: RunState | None = None,
    job: str = "",
) -> dict[str, Any]:
    """Benchmark ``artifact`` on phone ``serial`` in ``repeats`` runner processes.

    Returns the host benchmark's keys where they apply (``format, runtime, artifact,
    input_shape, warmup, iterations, repeats, threads_requested, threads_applied, affinity,
    load_ms, first_inference_ms, latency_ms, rss_before_load_mb, peak_rss_mb, torch_version,
    executorch_version, python_version``) plus ``device_info`` (serial, brand, model, Android
    release, ABI, CPU max frequencies), ``runs`` (each process: its latencies and samples,
    thermal and frequency snapshots before and after, cool-down, device-clock runner time),
    ``thermal`` (hottest zone before the first and after the last run), ``remote_command``,
    ``pushed`` (what was not in the push cache yet), ``retries_used``, ``timing`` (job time and
    the runners' share of it), ``warnings`` and ``null_reasons``. ``latency_ms`` combines the
    runs (:func:`mobileforge.bench.stats.combine_runs`). ``device_info`` is not called
    ``device``: the workflow stores the configured device name under that key.

    ``cooldown`` (see :func:`mobileforge.bench.thermal.cool_down`) applies before each run;
    ``timeouts`` has ``command_s`` (any short command, pushes), ``run_s`` (one runner process)
    and ``wait_for_device_s``; ``state`` is the workflow run's memory of this phone (probe
    cache, gone marker); ``job`` names the caller in messages.
    """
    started = time.perf_counter()
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    work, plan, outcome = _setup(
        artifact, fmt, serial, runner, input_shape, threads, warmup, iterations, adb_host,
        adb_port, remote_dir, cooldown, timeouts, state, job, retries,
    )  # fmt: skip
    _run_repeats(work, plan, outcome, repeats, retries)
    return _result(plan, outcome, work, time.perf_counter() - started)


def _setup(
    artifact: str | Path,
    fmt: str,
    serial: str,
    runner: str | Path,
    input_shape: list[int],
    threads: int,
    warmup: int,
    iterations: int,
    adb_host: str,
    adb_port: int,
    remote_dir: str,
    cooldown: Mapping[str, Any] | None,
    timeouts: Mapping[str, float] | None,
    state: RunState | None,
    job: str,
    retries: int = 0,
    extra_args: tuple[str, ...] = (),
) -> tuple[_Job, _Plan, _Outcome]:
    """Check the request, reach the phone, probe it (once per run) and plan the runner's
    command (``extra_args`` after the usual flags); nothing is pushed or run yet."""
    artifact, runner = Path(artifact), Path(runner)
    input_shape = [int(d) for d in input_shape]
    check_request(artifact, fmt, input_shape, threads, warmup, iterations)
    if not runner.is_file():
        raise FileNotFoundError(
            f"{RUNNERS[fmt]} runner not found at {runner}; {fmt} artifacts need "
            f"{RUNNER_SOURCES[fmt]}"
        )
    base = pushcache.validate_remote_dir(remote_dir)
    phone = Phone(serial, adb_host, adb_port)
    state = state or RunState(f"adb-{serial}", run_id="")
    work = _Job(phone, state, timeouts or {}, job or f"{artifact.name} on {serial}")

    work.check_gone()
    phone.require_online()
    outcome = _Outcome()
    probe = _probe(work, retries, outcome)
    cpus, prefix = _launch_prefix(probe, threads, outcome)
    files = [
        (runner, RUNNERS[fmt], 0o755, state.sha256(runner)),
        (artifact, artifact.name, 0o644, state.sha256(artifact)),
    ]
    remote = [pushcache.cached_path(base, sha, name) for _, name, _, sha in files]
    args = _runner_args(fmt, remote[1], input_shape, threads, warmup, iterations)
    args += list(extra_args)
    plan = _Plan(
        fmt=fmt, artifact=artifact, runner=runner, input_shape=input_shape, threads=threads,
        warmup=warmup, iterations=iterations, cooldown=dict(cooldown or {}),
        adb_server=f"{adb_host}:{adb_port}", base=base, probe=probe,
        device_info={"serial": serial, **probe["info"], "cpu_max_freq_khz": probe["max_freq_khz"]},
        cpus=cpus, files=files, remote=remote, invocation=_q(*prefix, remote[0], *args),
    )  # fmt: skip
    return work, plan, outcome


def _probe(work: _Job, retries: int, outcome: _Outcome) -> dict[str, Any]:
    """The phone's probe (once per phone and run); cut or hung like any command."""
    while True:
        try:
            return work.probe()
        except DeviceDisconnected as cut:
            if outcome.retries_used >= retries:
                raise
            outcome.retries_used += 1
            work.recover(cut)
        except DeviceHung as hung:
            raise work.hung(hung) from hung


def _launch_prefix(
    probe: dict[str, Any], threads: int, outcome: _Outcome
) -> tuple[list[int] | None, list[str]]:
    """The CPUs the runner is pinned to (None: unpinned) and the words before its command
    (``time -v`` for peak memory, ``taskset``); notes why either is missing."""
    try:
        cpus, unpinned = probing.choose_cpus(probe, threads)
    except ValueError as exc:
        raise AdbBenchmarkError(str(exc)) from exc
    prefix: list[str] = []
    if probe["time_binary"]:
        prefix += [probe["time_binary"], "-v"]
    else:
        outcome.null_reasons["peak_rss_mb"] = probe["notes"]["peak_rss_mb"]
    if cpus is not None:
        prefix += ["taskset", probing.cpu_mask(cpus)]
    else:
        outcome.null_reasons["affinity"] = f"runs unpinned: {unpinned}"
        outcome.warnings.append(f"unpinned: {unpinned}")
    return cpus, prefix


def _prepare(work: _Job, plan: _Plan, pushed: list[str]) -> None:
    """Sweep stale runs and make sure runner and artifact are in the push cache."""
    result = work.shell(pushcache.prepare_command(plan.base, plan.remote))
    have = pushcache.present(result.stdout, len(plan.remote))
    if have is None:
        raise AdbBenchmarkError(
            f"preparing {plan.base} on {work.phone.where} failed (exit {result.returncode}): "
            f"{_tail(result.output)}"
        )
    for i, (src, _, mode, _) in enumerate(plan.files):
        if i in have:
            continue
        partial = plan.remote[i] + ".partial"
        work.phone.push(src, partial, mode, work.timeouts["command_s"])
        done = work.shell(pushcache.install_command(plan.base, partial, plan.remote[i], mode))
        if done.returncode != 0:
            raise AdbBenchmarkError(
                f"installing {plan.remote[i]} on {work.phone.where} failed: {_tail(done.output)}"
            )
        pushed.append(plan.remote[i])


def _run_repeats(
    work: _Job,
    plan: _Plan,
    outcome: _Outcome,
    repeats: int,
    retries: int,
    prepared: Callable[[], None] | None = None,
    ran: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Run until ``repeats`` runs succeeded, each after the cool-down. A cut connection is
    retried (up to ``retries`` times per job) after the phone is back; a hang is not.

    ``prepared`` is called after each sweep and push (runner and artifact are on the phone),
    ``ran`` with each run once it succeeded: a cut in either retries like a cut run."""

    def snapshot() -> dict[str, Any]:
        return thermal.parse_snapshot(work.shell(thermal.SNAPSHOT_COMMAND).stdout)

    needs_prepare = True
    while len(outcome.runs) < repeats:
        try:
            if needs_prepare:
                _prepare(work, plan, outcome.pushed)
                if prepared is not None:
                    prepared()
                needs_prepare = False
            cooled = thermal.cool_down(plan.cooldown, snapshot)
            if cooled["warning"]:
                outcome.warnings.append(f"run {len(outcome.runs) + 1}: {cooled['warning']}")
            run = _one_run(work, plan, cooled)
            if ran is not None:
                ran(run)
            outcome.runs.append(run)
            outcome.runs[-1]["attempt"] = outcome.retries_used + 1
        except DeviceDisconnected as cut:
            if outcome.retries_used >= retries:
                if retries:
                    raise AdbBenchmarkError(f"{cut} (retried {retries} time(s))") from cut
                raise
            outcome.retries_used += 1
            work.recover(cut)
            needs_prepare = True  # sweep the cut run; the cache may have lost a partial push
        except DeviceHung as hung:
            raise work.hung(hung, plan.kill_pattern) from hung


def _one_run(work: _Job, plan: _Plan, cooled: dict[str, Any]) -> dict[str, Any]:
    """Run the runner once (one round trip) and parse what it printed."""
    token = secrets.token_hex(6)
    mark = f"@@mobileforge-{token}:"
    run_dir = posixpath.join(plan.base, f"run-{token}")
    command = _run_command(mark, run_dir, plan.invocation, plan.fmt)
    print(
        f"mobileforge: running on {work.phone.serial}: {plan.invocation}",
        file=sys.stderr,
        flush=True,
    )
    started_unix = time.time()
    t = time.perf_counter()
    result = work.shell(command, work.timeouts["run_s"], what=plan.invocation, heartbeat=True)
    wall_s = time.perf_counter() - t
    parts = _split_run_output(result.stdout, mark)
    values, texts = parts["values"], parts["text"]
    if "end" not in values or "rc" not in values:
        raise DeviceDisconnected(
            f"output of {work.phone.where} ended early (exit {result.returncode}) for: "
            f"{plan.invocation}; output tail:\n{_tail(result.output)}"
        )
    output = texts.get("t0", "") + "\n" + result.stderr
    _check_exit(values["rc"], plan.fmt, output, work.phone.serial)
    t0, t1 = _float(values.get("t0")), _float(values.get("t1"))
    runner_s = t1 - t0 if t0 is not None and t1 is not None and t1 >= t0 else None
    run: dict[str, Any] = {
        "started_unix": started_unix,
        "ended_unix": started_unix + wall_s,
        "runner_start_unix": t0,
        "runner_s": runner_s if runner_s is not None else wall_s,
        "runner_s_source": "device clock" if runner_s is not None else "host (round trip)",
        "thermal_before": thermal.parse_snapshot(texts.get("before", "")),
        "thermal_after": thermal.parse_snapshot(texts.get("after", "")),
        "cooldown": cooled,
        "load_ms": None,
        "first_inference_ms": None,
        "threads_applied": None,
    }
    if plan.fmt == "ptl":
        samples = _ptl_samples(output, plan.iterations)
    else:
        if not _ET_ITER_RE.search(output):
            output += "\n" + texts.get("logcat", "")
        samples, measured = _pte_samples(output, plan.warmup, plan.iterations, plan.threads)
        run.update(measured)
    run["peak_rss_mb"] = probing.parse_peak_rss_mb(output)
    run["latency_ms"] = summarize_latencies(samples)
    run["samples_ms"] = samples
    return run


def _check_exit(rc: str, fmt: str, output: str, serial: str) -> None:
    """Refuse a run whose runner exited with anything but 0 (``rc``: its exit status)."""
    code = int(rc) if rc.lstrip("-").isdigit() else -1
    if code == 0:
        return
    hint = ""
    if fmt == "pte" and _OLD_RUNNER_RE.search(output):
        hint = (
            " This executor_runner is older than ExecuTorch v1.3, which added "
            "--print_output: rebuild it from v1.3 or later."
        )
    raise AdbBenchmarkError(
        f"{RUNNERS[fmt]} exited with {code} on {serial}.{hint} Output tail:\n{_tail(output)}"
    )


def _ptl_samples(output: str, iterations: int) -> list[float]:
    """The timed iterations speed_benchmark_torch reported (ms), all ``iterations`` of them."""
    samples = parse_pep_samples(output)
    if len(samples) != iterations:
        raise AdbBenchmarkError(
            f"expected {iterations} PyTorchObserver latency lines from speed_benchmark_torch, "
            f"parsed {len(samples)} (does the binary support --report_pep?); output tail:\n"
            f"{_tail(output)}"
        )
    return samples


def _pte_samples(
    output: str, warmup: int, iterations: int, threads: int
) -> tuple[list[float], dict[str, Any]]:
    """The timed executions executor_runner logged (ms) and what else it told: ``load_ms``,
    ``first_inference_ms`` (its first execution) and ``threads_applied``."""
    parsed = parse_executor_runner(output)
    executions = parsed["iterations_ms"]
    if len(executions) != 1 + warmup + iterations:
        raise AdbBenchmarkError(
            f"expected {1 + warmup + iterations} 'Iteration i of n: x ms' lines from "
            f"executor_runner (stdout/stderr or logcat tag ExecuTorch), parsed "
            f"{len(executions)}; is it v1.3+ built with EXECUTORCH_ENABLE_LOGGING? Output "
            f"tail:\n{_tail(output)}"
        )
    if parsed["threads"] is not None and parsed["threads"] != threads:
        raise AdbBenchmarkError(
            f"executor_runner reset its threadpool to {parsed['threads']} threads, "
            f"{threads} were requested"
        )
    measured = {
        "load_ms": parsed["load_ms"],
        "first_inference_ms": executions[0],
        "threads_applied": parsed["threads"],
    }
    return executions[1 + warmup :], measured


def _median(values: list[float | None]) -> float | None:
    """The median of the values present (the same value as sorting and taking the middle or
    the mean of the middle two); None when none is."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _note_runner_gaps(
    plan: _Plan, runs: list[dict[str, Any]], threads_applied: int | None, notes: dict[str, str]
) -> str:
    """Note in ``notes`` why the runner leaves fields empty; returns how threads were set."""
    if plan.fmt == "ptl":
        notes["load_ms"] = "speed_benchmark_torch does not report load time"
        notes["first_inference_ms"] = "speed_benchmark_torch does not time its first run separately"
        notes["threads_applied"] = (
            "speed_benchmark_torch has no thread flag; only the CPU affinity was set (taskset), "
            "its thread pool size is its own choice"
        )
        notes["torch_version"] = "version of the runner binary is not queryable"
        return "taskset" if plan.cpus else "none"
    if all(run["load_ms"] is None for run in runs):
        notes["load_ms"] = "executor_runner did not log 'Model loaded in ... ms'"
    if threads_applied is None:
        notes["threads_applied"] = (
            "executor_runner did not log its threadpool size (built without threadpool?)"
        )
    notes["torch_version"] = "executor_runner does not use torch"
    return "--cpu_threads" + (" + taskset" if plan.cpus else "")


def _result(plan: _Plan, outcome: _Outcome, work: _Job, job_s: float) -> dict[str, Any]:
    """The job's record (see :func:`run_adb_benchmark`)."""
    runs, null_reasons = outcome.runs, outcome.null_reasons
    applied = {run["threads_applied"] for run in runs}
    threads_applied = applied.pop() if len(applied) == 1 else None
    thread_control = _note_runner_gaps(plan, runs, threads_applied, null_reasons)
    peaks = [run["peak_rss_mb"] for run in runs if run["peak_rss_mb"] is not None]
    if plan.probe["time_binary"] and not peaks:
        null_reasons["peak_rss_mb"] = f"{plan.probe['time_binary']} -v printed no max RSS line"
    null_reasons["rss_before_load_mb"] = "not observable from outside the runner process"
    null_reasons["python_version"] = "no Python on the device"
    null_reasons["executorch_version"] = "version of the runner binary is not queryable"
    runner_s = sum(run["runner_s"] for run in runs)
    return {
        "format": plan.fmt,
        "runtime": RUNNERS[plan.fmt],
        "artifact": str(plan.artifact),
        "artifact_bytes": plan.artifact.stat().st_size,
        "input_shape": plan.input_shape,
        "input": "ones float32" + (" (shapes stored in the program)" if plan.fmt == "pte" else ""),
        "warmup": plan.warmup,
        "iterations": plan.iterations,
        "repeats": len(runs),
        "cooldown": dict(plan.cooldown),
        "threads_requested": plan.threads,
        "threads_applied": threads_applied,
        "thread_control": thread_control,
        "affinity": plan.cpus,
        "load_ms": _median([run["load_ms"] for run in runs]),
        "first_inference_ms": _median([run["first_inference_ms"] for run in runs]),
        "latency_ms": combine_runs([run["latency_ms"] for run in runs]),
        "rss_before_load_mb": None,
        "peak_rss_mb": max(peaks) if peaks else None,
        "torch_version": None,
        "executorch_version": None,
        "python_version": None,
        "device_info": plan.device_info,
        "adb_server": plan.adb_server,
        "runner": str(plan.runner),
        "runner_sha256": plan.files[0][3],
        "remote_command": plan.invocation,
        "pushed": outcome.pushed,
        "retries_used": outcome.retries_used,
        "thermal": thermal.across_runs(runs, plan.cooldown.get("zones") or ""),
        "timing": {
            "job_s": job_s,
            "runner_s": runner_s,
            "overhead_s": job_s - runner_s,
            "round_trips": work.round_trips,
        },
        "warnings": outcome.warnings,
        "null_reasons": null_reasons,
        "runs": runs,
    }
