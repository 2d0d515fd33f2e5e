"""Benchmark an artifact on an Android device over adb, with the ``adbutils`` client.

The device runs a native benchmark binary; this module pushes it and the artifact, runs it
pinned to the chosen cores, parses its per-iteration output and cleans up:

* ``ptl``: PyTorch's ``speed_benchmark_torch`` (``binaries/speed_benchmark_torch.cc``, built
  with ``BUILD_LITE_INTERPRETER`` so it loads with ``_load_for_mobile``). Flags used:
  ``--model --input_dims --input_type=float --warmup --iter --report_pep=true``; with
  ``--report_pep`` it prints one ``PyTorchObserver {... "unit": "us", "value": "<t>"}`` line
  per timed iteration (``<t>`` is a float printed by iostream, e.g. ``"1234"`` or
  ``"1.23457e+06"``). It has no thread flag and reports neither load time nor first
  inference, so those are recorded as null with the reason.
* ``pte``: ExecuTorch's ``examples/portable/executor_runner`` (v1.3 or later), which takes
  ``--model_path --num_executions --cpu_threads --print_output=none`` and logs
  ``Model loaded in <x> ms.``, ``Resetting threadpool with num threads = <n>`` and one
  ``Iteration <i> of <n>: <x> ms`` per execution. Android builds log to logcat (tag
  ``ExecuTorch``), POSIX builds to stderr; both are read. It has no warm-up flag, so one
  process runs ``1 + warmup + iterations`` executions: the first is the first inference, the
  next ``warmup`` are discarded, the rest are the samples. It fills inputs with ones in the
  shapes stored in the program, so ``input_shape`` is informational for ``pte``.

Threads: the runner is started under ``taskset`` with a mask of ``threads`` CPUs (the fastest
cores by ``cpuinfo_max_freq``, highest index first on ties, since big cores are numbered last on
big.LITTLE SoCs). ``executor_runner`` additionally gets ``--cpu_threads``; for
``speed_benchmark_torch`` the thread pool size cannot be set, which the result says.
Peak memory comes from ``time -v`` (toybox or GNU) when the device has one, else null.

Every string sent to the device shell goes through ``shlex.quote``; paths and flags included.
"""

from __future__ import annotations

import json
import posixpath
import re
import secrets
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any

import adbutils
from adbutils.errors import AdbError, AdbTimeout

from mobileforge.bench import check_request, tail
from mobileforge.bench.stats import summarize_latencies
from mobileforge.files import sha256_file

RUNNERS = {"ptl": "speed_benchmark_torch", "pte": "executor_runner"}
RUNNER_SOURCES = {
    "ptl": "PyTorch's binaries/speed_benchmark_torch.cc built for Android with "
    "BUILD_LITE_INTERPRETER=1 (scripts/build_android.sh)",
    "pte": "ExecuTorch's examples/portable/executor_runner (v1.3+) built for Android with "
    "-DEXECUTORCH_BUILD_EXECUTOR_RUNNER=ON -DEXECUTORCH_BUILD_XNNPACK=ON",
}
DEVICE_PROPS = {
    "brand": "ro.product.brand",
    "manufacturer": "ro.product.manufacturer",
    "model": "ro.product.model",
    "android_release": "ro.build.version.release",
    "sdk": "ro.build.version.sdk",
    "abi": "ro.product.cpu.abi",
    "soc_model": "ro.soc.model",
}
#: Places a ``time`` binary with ``-v`` (max RSS) may live; ``time`` alone would hit mksh's
#: ``time`` keyword, which has no ``-v``.
TIME_BINARIES = ("/system/bin/time", "/usr/bin/time")
SHORT_TIMEOUT_S = 60.0
OUTPUT_TAIL_CHARS = 3000

_PEP_RE = re.compile(r"PyTorchObserver\s+(\{.*\})")
_ET_ITER_RE = re.compile(r"Iteration (\d+) of (\d+): ([0-9.eE+-]+) ms")
_ET_LOAD_RE = re.compile(r"Model loaded in ([0-9.eE+-]+) ms")
_ET_THREADS_RE = re.compile(r"Resetting threadpool with num threads = (-?\d+)")
_MAXRSS_RE = re.compile(
    r"Max RSS \(KiB\):\s*(\d+)|Maximum resident set size \(kbytes\):\s*(\d+)", re.IGNORECASE
)


class AdbBenchmarkError(RuntimeError):
    """A device benchmark could not run or produced no usable numbers."""


class AdbServerUnreachable(AdbBenchmarkError):
    """Nothing answers on the adb server address."""


class DeviceNotConnected(AdbBenchmarkError):
    """The requested serial is not among the server's devices in state ``device``."""


# -- adbutils without hidden side effects ---------------------------------------------------
class _Connection(adbutils.AdbConnection):
    """adbutils' connection, minus its fallback of running ``adb start-server`` on failure.

    A benchmark job must not start a daemon (on the default port, whatever port it was asked
    to use) as a side effect; an unreachable server is reported instead.
    """

    def _safe_connect(self) -> socket.socket:
        return self._create_socket()


class _Client(adbutils.AdbClient):
    """``adbutils.AdbClient`` whose connections never spawn an adb server (see above)."""

    def __init__(self, host: str, port: int, socket_timeout: float | None = None) -> None:
        super().__init__(host, port, socket_timeout)
        self._mf_timeout = socket_timeout

    def make_connection(self, timeout: float | None = None) -> adbutils.AdbConnection:
        timeout = timeout or self._mf_timeout
        try:
            conn = _Connection(self.host, self.port)
        except TimeoutError as exc:
            raise AdbTimeout("connect to adb server timeout") from exc
        if timeout:
            conn.conn.settimeout(timeout)
        return conn


def _q(*args: object) -> str:
    """Quote every word for the device shell; the only way commands are built here."""
    return " ".join(shlex.quote(str(a)) for a in args)


def _tail(text: str) -> str:
    return tail(text, OUTPUT_TAIL_CHARS)


def connect(serial: str, adb_host: str = "127.0.0.1", adb_port: int = 5037) -> adbutils.AdbDevice:
    """Return the device ``serial`` from the adb server at ``adb_host:adb_port``.

    Checks the server answers (plain TCP connect, 3 s) and the serial is listed in state
    ``device``, so the two common mistakes get messages that say what to do.
    """
    try:
        with socket.create_connection((adb_host, adb_port), timeout=3.0):
            pass
    except OSError as exc:
        raise AdbServerUnreachable(
            f"adb server not reachable at {adb_host}:{adb_port} ({exc}); start it with "
            f"`adb start-server` (or `adb -P {adb_port} start-server` for a non-default port) "
            "on the machine the phone is plugged into"
        ) from exc
    client = _Client(adb_host, adb_port, socket_timeout=SHORT_TIMEOUT_S)
    try:
        infos = client.list()
    except AdbError as exc:
        raise AdbServerUnreachable(
            f"adb server at {adb_host}:{adb_port} did not answer host:devices: {exc}"
        ) from exc
    states = {info.serial: info.state for info in infos}
    if states.get(serial) != "device":
        listed = ", ".join(f"{s} ({st})" for s, st in sorted(states.items())) or "none"
        why = "not connected" if serial not in states else f"in state {states[serial]!r}"
        raise DeviceNotConnected(
            f"device {serial!r} is {why} on adb server {adb_host}:{adb_port}; "
            f"connected serials: {listed}"
        )
    return client.device(serial)


def _shell(device: adbutils.AdbDevice, command: str, timeout: float = SHORT_TIMEOUT_S) -> Any:
    """Run an already-quoted command; returns adbutils' ShellReturn (exit code + output)."""
    try:
        return device.shell2(command, timeout=timeout, v2=True)
    except AdbTimeout as exc:
        raise AdbBenchmarkError(
            f"no answer from {device.serial} within {timeout} s for: {command} (the process "
            "may still be running on the device)"
        ) from exc


def _check(result: Any, what: str) -> str:
    if result.returncode != 0:
        raise AdbBenchmarkError(
            f"{what} failed on the device (exit {result.returncode}): {_tail(result.output)}"
        )
    return str(result.output)


def device_info(device: adbutils.AdbDevice) -> dict[str, Any]:
    """Brand, model, Android release, ABI ... via ``getprop`` (empty answers become None)."""
    info: dict[str, Any] = {"serial": device.serial}
    for key, prop in DEVICE_PROPS.items():
        res = _shell(device, _q("getprop", prop))
        value = res.output.strip() if res.returncode == 0 else ""
        info[key] = value or None
    return info


_CPU_PROBE = (
    "cat /sys/devices/system/cpu/online 2>/dev/null; "
    "for c in /sys/devices/system/cpu/cpu[0-9]*; do n=${c##*cpu}; "
    'f=$(cat "$c/cpufreq/cpuinfo_max_freq" 2>/dev/null); echo "cpu $n ${f:-0}"; done'
)


def _parse_cpu_list(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def choose_cpus(probe_output: str, threads: int) -> tuple[list[int], dict[int, int]]:
    """Pick ``threads`` online CPUs, fastest first (max frequency, then highest index)."""
    freqs: dict[int, int] = {}
    online: set[int] | None = None
    for line in probe_output.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == "cpu" and fields[1].isdigit():
            freqs[int(fields[1])] = int(fields[2]) if fields[2].isdigit() else 0
        elif re.fullmatch(r"[0-9,\-]+", line.strip() or "x"):
            online = _parse_cpu_list(line)
    candidates = sorted(online if online is not None else freqs)
    if not candidates:
        raise AdbBenchmarkError(f"could not list the device's CPUs: {_tail(probe_output)}")
    if threads > len(candidates):
        raise AdbBenchmarkError(
            f"{threads} threads requested but the device has {len(candidates)} online CPU(s) "
            f"{candidates}; lower the device's 'threads'"
        )
    ranked = sorted(candidates, key=lambda c: (freqs.get(c, 0), c), reverse=True)
    return sorted(ranked[:threads]), freqs


def cpu_mask(cpus: list[int]) -> str:
    """Hex affinity mask without ``0x`` (accepted by toybox and util-linux ``taskset``)."""
    return format(sum(1 << c for c in cpus), "x")


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


def parse_peak_rss_mb(output: str) -> float | None:
    """Max RSS from toybox or GNU ``time -v`` output, in MiB."""
    matches = _MAXRSS_RE.findall(output)
    if not matches:
        return None
    kib = next(g for g in matches[-1] if g)
    return int(kib) / 1024.0


def _validate_remote_dir(remote_dir: str) -> str:
    norm = posixpath.normpath(remote_dir)
    if not remote_dir.startswith("/") or norm in ("/", "//") or ".." in remote_dir.split("/"):
        raise ValueError(f"remote_dir must be an absolute device path below /, got {remote_dir!r}")
    return norm


def _find_time_binary(device: adbutils.AdbDevice) -> str | None:
    for candidate in TIME_BINARIES:
        res = _shell(device, _q(candidate, "-v", "true"))
        if res.returncode == 0 and parse_peak_rss_mb(res.output) is not None:
            return candidate
    return None


def _push(device: adbutils.AdbDevice, src: Path, dst: str, mode: int) -> None:
    """Push one file (size checked afterwards); adbutils' bare "FAIL" gets context here."""
    try:
        device.sync.push(src, dst, mode=mode, check=True)
    except AdbError as exc:
        raise AdbBenchmarkError(
            f"pushing {src} to {device.serial}:{dst} failed ({exc}); is the directory "
            "writable by the shell user (use remote_dir under /data/local/tmp)?"
        ) from exc


def _cleanup(device: adbutils.AdbDevice, run_dir: str) -> None:
    """Remove this run's directory; a failure is logged, never masks the benchmark's error."""
    try:
        res = _shell(device, _q("rm", "-rf", run_dir))
        problem = _tail(str(res.output)) if res.returncode != 0 else None
    except (AdbError, AdbBenchmarkError, OSError) as exc:
        problem = str(exc)
    if problem:
        print(
            f"mobileforge: could not remove {run_dir} on {device.serial}: {problem}",
            file=sys.stderr,
        )


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
    remote_dir: str = "/data/local/tmp/mobileforge",
    timeout_s: float = 600,
    cooldown_s: float = 0.0,
) -> dict[str, Any]:
    """Benchmark ``artifact`` on device ``serial``; see the module docstring for the method.

    Returns the host benchmark's keys where they apply (``format, runtime, artifact,
    input_shape, warmup, iterations, threads_requested, threads_applied, affinity, load_ms,
    first_inference_ms, latency_ms, rss_before_load_mb, peak_rss_mb, torch_version,
    executorch_version, python_version, samples_ms``) plus ``device_info`` (serial, brand,
    model, Android release, ABI, CPU max frequencies), ``remote_command`` and ``null_reasons``
    (why each null is null). ``device_info`` is not called ``device``: the workflow stores the
    configured device name under that key.
    Files are pushed to a fresh ``<remote_dir>/run-<id>`` directory that is removed afterwards.
    ``timeout_s`` bounds the wait for the runner's output. ``cooldown_s`` sleeps before the
    runner starts, letting the device shed heat from the push.
    """
    artifact = Path(artifact)
    runner = Path(runner)
    input_shape = [int(d) for d in input_shape]
    check_request(artifact, fmt, input_shape, threads, warmup, iterations)
    if not runner.is_file():
        raise FileNotFoundError(
            f"{RUNNERS[fmt]} runner not found at {runner}; {fmt} artifacts need "
            f"{RUNNER_SOURCES[fmt]}"
        )
    base_dir = _validate_remote_dir(remote_dir)

    device = connect(serial, adb_host, adb_port)
    info = device_info(device)
    null_reasons: dict[str, str] = {}

    run_dir = posixpath.join(base_dir, f"run-{secrets.token_hex(6)}")
    remote_runner = posixpath.join(run_dir, RUNNERS[fmt])
    remote_artifact = posixpath.join(run_dir, artifact.name)
    _check(_shell(device, _q("mkdir", "-p", run_dir)), f"mkdir {run_dir}")
    try:
        _push(device, runner, remote_runner, 0o755)
        _push(device, artifact, remote_artifact, 0o644)
        _check(_shell(device, _q("chmod", "755", remote_runner)), "chmod of the runner")

        cpus, freqs = choose_cpus(_check(_shell(device, _CPU_PROBE), "CPU probe"), threads)
        mask = cpu_mask(cpus)
        prefix: list[str] = []
        affinity: list[int] | None = cpus
        if _shell(device, _q("taskset", mask, "true")).returncode == 0:
            prefix += ["taskset", mask]
        else:
            affinity = None
            null_reasons["affinity"] = "taskset is missing or refused the mask on this device"
        info["cpu_max_freq_khz"] = {str(c): freqs.get(c) or None for c in sorted(freqs)}
        time_bin = _find_time_binary(device)
        if time_bin:
            prefix = [time_bin, "-v", *prefix]
        else:
            null_reasons["peak_rss_mb"] = f"no `time -v` on the device ({', '.join(TIME_BINARIES)})"

        if fmt == "ptl":
            args = [
                f"--model={remote_artifact}",
                f"--input_dims={','.join(str(d) for d in input_shape)}",
                "--input_type=float",
                f"--warmup={warmup}",
                f"--iter={iterations}",
                "--report_pep=true",
            ]
        else:
            args = [
                f"--model_path={remote_artifact}",
                f"--num_executions={1 + warmup + iterations}",
                f"--cpu_threads={threads}",
                "--print_output=none",
            ]
            _shell(device, _q("logcat", "-c"))  # best effort; absent on non-Android shells
        command = "cd " + _q(run_dir) + " && " + _q(*prefix, remote_runner, *args)
        if cooldown_s > 0:
            time.sleep(cooldown_s)
        print(f"mobileforge: running on {serial}: {command}", file=sys.stderr, flush=True)
        res = _shell(device, command, timeout=timeout_s)
        output = str(res.output)
        if res.returncode != 0:
            raise AdbBenchmarkError(
                f"{RUNNERS[fmt]} exited with {res.returncode} on {serial}; output tail:\n"
                f"{_tail(output)}"
            )
        if fmt == "pte" and not _ET_ITER_RE.search(output):
            log = _shell(device, _q("logcat", "-d", "-s", "ExecuTorch:I"))
            if log.returncode == 0:
                output += "\n" + str(log.output)
    finally:
        _cleanup(device, run_dir)

    load_ms: float | None = None
    first_inference_ms: float | None = None
    threads_applied: int | None = None
    if fmt == "ptl":
        samples = parse_pep_samples(output)
        if len(samples) != iterations:
            raise AdbBenchmarkError(
                f"expected {iterations} PyTorchObserver latency lines from speed_benchmark_torch, "
                f"parsed {len(samples)} (does the binary support --report_pep?); output tail:\n"
                f"{_tail(output)}"
            )
        null_reasons["load_ms"] = "speed_benchmark_torch does not report load time"
        null_reasons["first_inference_ms"] = (
            "speed_benchmark_torch does not time its first run separately"
        )
        null_reasons["threads_applied"] = (
            "speed_benchmark_torch has no thread flag; only the CPU affinity was set (taskset), "
            "its thread pool size is its own choice"
        )
        thread_control = "taskset" if affinity else "none"
    else:
        parsed = parse_executor_runner(output)
        runs = parsed["iterations_ms"]
        if len(runs) != 1 + warmup + iterations:
            raise AdbBenchmarkError(
                f"expected {1 + warmup + iterations} 'Iteration i of n: x ms' lines from "
                f"executor_runner (stdout/stderr or logcat tag ExecuTorch), parsed {len(runs)}; "
                f"is it v1.3+ built with EXECUTORCH_ENABLE_LOGGING? Output tail:\n{_tail(output)}"
            )
        first_inference_ms, samples = runs[0], runs[1 + warmup :]
        load_ms = parsed["load_ms"]
        threads_applied = parsed["threads"]
        if load_ms is None:
            null_reasons["load_ms"] = "executor_runner did not log 'Model loaded in ... ms'"
        if threads_applied is None:
            null_reasons["threads_applied"] = (
                "executor_runner did not log its threadpool size (built without threadpool?)"
            )
        elif threads_applied != threads:
            raise AdbBenchmarkError(
                f"executor_runner reset its threadpool to {threads_applied} threads, "
                f"{threads} were requested"
            )
        thread_control = "--cpu_threads" + (" + taskset" if affinity else "")
    peak_rss_mb = parse_peak_rss_mb(output) if time_bin else None
    if time_bin and peak_rss_mb is None:
        null_reasons["peak_rss_mb"] = f"{time_bin} -v printed no max RSS line"
    null_reasons["rss_before_load_mb"] = "not observable from outside the runner process"
    null_reasons["torch_version"] = "version of the runner binary is not queryable"
    null_reasons["python_version"] = "no Python on the device"
    if fmt == "pte":
        null_reasons["torch_version"] = "executor_runner does not use torch"
    null_reasons["executorch_version"] = "version of the runner binary is not queryable"

    return {
        "format": fmt,
        "runtime": RUNNERS[fmt],
        "artifact": str(artifact),
        "artifact_bytes": artifact.stat().st_size,
        "input_shape": input_shape,
        "input": "ones float32" + (" (shapes stored in the program)" if fmt == "pte" else ""),
        "warmup": warmup,
        "iterations": iterations,
        "cooldown_s": cooldown_s,
        "threads_requested": threads,
        "threads_applied": threads_applied,
        "thread_control": thread_control,
        "affinity": affinity,
        "load_ms": load_ms,
        "first_inference_ms": first_inference_ms,
        "latency_ms": summarize_latencies(samples),
        "rss_before_load_mb": None,
        "peak_rss_mb": peak_rss_mb,
        "torch_version": None,
        "executorch_version": None,
        "python_version": None,
        "device_info": info,
        "adb_server": f"{adb_host}:{adb_port}",
        "runner": str(runner),
        "runner_sha256": sha256_file(runner),
        "remote_command": command,
        "null_reasons": null_reasons,
        "samples_ms": samples,
    }
