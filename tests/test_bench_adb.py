"""The adb benchmark path, driven through the real adbutils client against an emulated device.

``tests/fake_adb.py`` is a loopback adb server whose "device" runs commands with /bin/sh. The
device-side runners are small Python scripts written here that behave like the real binaries
(same flags, same output lines) while really loading and running the artifact, so client,
protocol, push, quoting and parsing are all exercised for real.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from mobileforge.bench.adb import (
    AdbBenchmarkError,
    AdbServerUnreachable,
    DeviceNotConnected,
    choose_cpus,
    cpu_mask,
    parse_executor_runner,
    parse_peak_rss_mb,
    parse_pep_samples,
    run_adb_benchmark,
)
from tests.fake_adb import FakeAdbServer, FakeDevice, free_port

SERIAL = "FAKE0001"
PROPS = {
    "ro.product.brand": "mobileforge",
    "ro.product.manufacturer": "Emulated",
    "ro.product.model": "Loopback 1",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.product.cpu.abi": "x86_64",
}
SHAPE = [1, 3, 8, 8]
#: The emulated device's CPUs are the host's (its shell reads the host's /sys).
CPU_COUNT = len(list(Path("/sys/devices/system/cpu").glob("cpu[0-9]*")))

FAKE_SPEED_BENCHMARK_TORCH = f"""\
#!{sys.executable}
# Stand-in for PyTorch's speed_benchmark_torch (lite-interpreter build): same flags, same
# output, real inference. Records its argv so tests can check what reached the process.
import json, os, sys, time
flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
with open(os.path.join(os.environ["FAKE_DEVICE_ROOT"], "runner_argv.jsonl"), "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
import torch, torch.jit.mobile
module = torch.jit.mobile._load_for_lite_interpreter(flags["model"])
x = torch.ones([int(d) for d in flags["input_dims"].split(",")])
print("Starting benchmark.")
print("Running warmup runs.")
for _ in range(int(flags.get("warmup", "0"))):
    module(x)
print("Main runs.")
times = []
for _ in range(int(flags.get("iter", "10"))):
    t = time.perf_counter()
    module(x)
    times.append((time.perf_counter() - t) * 1e6)
if flags.get("report_pep") == "true":
    for t in times:
        # iostream prints floats with 6 significant digits, like %g
        print('PyTorchObserver {{"type": "NET", "unit": "us", "metric": "latency", '
              '"value": "%s"}}' % format(t, "g"))
print("Main run finished. Microseconds per iter: %g." % (sum(times) / len(times)))
"""

FAKE_EXECUTOR_RUNNER = f"""\
#!{sys.executable}
# Stand-in for ExecuTorch's executor_runner (posix logging build): same flags and log lines,
# real execution through the ExecuTorch runtime.
import os, sys, time
flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
def log(msg):
    sys.stderr.write("I 00:00:00.000000 executorch:executor_runner.cpp:1] %s\\n" % msg)
import torch
from executorch.runtime import Runtime
from executorch.extension.pybindings import portable_lib
n = int(flags.get("cpu_threads", "-1"))
if n > 0:
    log("Resetting threadpool with num threads = %d" % n)
    portable_lib._unsafe_reset_threadpool(n)
t = time.perf_counter()
method = Runtime.get().load_program(flags["model_path"]).load_method("forward")
log("Model loaded in %f ms." % ((time.perf_counter() - t) * 1e3))
meta = method.metadata
inputs = [torch.ones(list(meta.input_tensor_meta(i).sizes())) for i in range(meta.num_inputs())]
total = 0.0
runs = int(flags.get("num_executions", "1"))
for i in range(runs):
    t = time.perf_counter()
    method.execute(inputs)
    dt = (time.perf_counter() - t) * 1e3
    total += dt
    log("Iteration %d of %d: %f ms" % (i + 1, runs, dt))
log("Model executed successfully %d time(s) in %f ms." % (runs, total))
"""

FAILING_RUNNER = """\
#!/bin/sh
echo "loading $1"
echo "terminate called after throwing an instance of 'c10::Error'" >&2
exit 3
"""


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def tiny_ptl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "tiny.ptl"
    # Traced, not scripted: this file runs first in the suite, and the process's first
    # torch.jit.script of nn.Conv2d once failed here ("builtin cannot be used as a value").
    # The adb path under test only needs a valid .ptl.
    example = torch.rand(1, 3, 8, 8)
    torch.jit.trace(Tiny().eval(), example)._save_for_lite_interpreter(str(path))
    return path


def _script(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
    return path


@pytest.fixture
def device_env(tmp_path: Path) -> Iterator[tuple[FakeAdbServer, FakeDevice, str]]:
    device = FakeDevice(SERIAL, tmp_path / "device", props=PROPS)
    remote_dir = str(device.root / "data" / "local" / "tmp" / "mobileforge")
    with FakeAdbServer([device]) as server:
        yield server, device, remote_dir
        assert server.errors == []


def _bench(server: FakeAdbServer, remote_dir: str, **kwargs: object) -> dict:
    args: dict[str, object] = {
        "fmt": "ptl",
        "serial": SERIAL,
        "input_shape": SHAPE,
        "threads": 1,
        "warmup": 2,
        "iterations": 5,
        "adb_port": server.port,
        "remote_dir": remote_dir,
        "timeout_s": 120,
    }
    args.update(kwargs)
    return run_adb_benchmark(**args)  # type: ignore[arg-type]


def test_ptl_benchmark_end_to_end(
    device_env: tuple[FakeAdbServer, FakeDevice, str], tiny_ptl: Path, tmp_path: Path
) -> None:
    server, device, remote_dir = device_env
    runner = _script(tmp_path, "speed_benchmark_torch", FAKE_SPEED_BENCHMARK_TORCH)
    result = _bench(server, remote_dir, artifact=tiny_ptl, runner=runner)

    assert result["runtime"] == "speed_benchmark_torch"
    assert result["latency_ms"]["count"] == 5 and len(result["samples_ms"]) == 5
    assert all(s > 0 for s in result["samples_ms"])
    assert result["latency_ms"]["min"] <= result["latency_ms"]["p50"] <= result["latency_ms"]["max"]
    assert result["device_info"].pop("cpu_max_freq_khz").keys() == {
        str(c) for c in range(CPU_COUNT)
    }
    assert result["device_info"] == {
        "serial": SERIAL,
        "brand": "mobileforge",
        "manufacturer": "Emulated",
        "model": "Loopback 1",
        "android_release": "14",
        "sdk": "34",
        "abi": "x86_64",
        "soc_model": None,
    }
    assert result["threads_requested"] == 1 and result["threads_applied"] is None
    assert "no thread flag" in result["null_reasons"]["threads_applied"]
    assert result["load_ms"] is None and "load_ms" in result["null_reasons"]
    assert result["affinity"] is not None and len(result["affinity"]) == 1
    if Path("/usr/bin/time").exists():  # the emulated device's `time -v` is the host's
        assert result["peak_rss_mb"] is not None and result["peak_rss_mb"] > 10
    json.dumps(result)  # the result is written as a JSON sidecar

    argv = json.loads((device.root / "runner_argv.jsonl").read_text().splitlines()[-1])
    assert argv[1:] == [
        "--input_dims=1,3,8,8",
        "--input_type=float",
        "--warmup=2",
        "--iter=5",
        "--report_pep=true",
    ]
    assert argv[0].startswith(f"--model={remote_dir}/run-") and argv[0].endswith("/tiny.ptl")
    # Both files went through the sync protocol, and the run directory is gone afterwards.
    assert [Path(p).name for p in device.pushed] == ["speed_benchmark_torch", "tiny.ptl"]
    assert list(Path(remote_dir).iterdir()) == []
    assert device.shell_log[-1].startswith("rm -rf ")


def test_shell_metacharacters_in_artifact_name_are_quoted(
    device_env: tuple[FakeAdbServer, FakeDevice, str], tiny_ptl: Path, tmp_path: Path
) -> None:
    server, device, remote_dir = device_env
    # Each payload first does a bare `cd` (to $HOME, the device root) so a marker would survive
    # the removal of the run directory; `&` and quotes check the quoting of quotes.
    evil_name = "x;cd;touch PWNED1;$(cd;touch PWNED2)`cd;touch PWNED3`'\" &.ptl"
    evil = tmp_path / "models" / evil_name
    evil.parent.mkdir()
    shutil.copy(tiny_ptl, evil)
    runner = _script(tmp_path, "speed_benchmark_torch", FAKE_SPEED_BENCHMARK_TORCH)

    result = _bench(server, remote_dir, artifact=evil, runner=runner, warmup=0, iterations=2)

    assert result["latency_ms"]["count"] == 2
    # Pushed under its literal name, and the runner received that literal path as one argv.
    assert Path(device.pushed[-1]).name == evil_name
    argv = json.loads((device.root / "runner_argv.jsonl").read_text().splitlines()[-1])
    assert argv[0].endswith("/" + evil_name)
    words = shlex.split(result["remote_command"])
    assert any(w.startswith("--model=") and w.endswith("/" + evil_name) for w in words)
    # Nothing in the name was executed anywhere the device shell could write.
    for where in (device.root, tmp_path):
        assert not list(where.rglob("PWNED*")), where
    assert not list(Path.cwd().glob("PWNED*"))


def test_runner_failure_reports_exit_code_and_output_and_cleans_up(
    device_env: tuple[FakeAdbServer, FakeDevice, str], tiny_ptl: Path, tmp_path: Path
) -> None:
    server, _, remote_dir = device_env
    runner = _script(tmp_path, "speed_benchmark_torch", FAILING_RUNNER)
    with pytest.raises(AdbBenchmarkError, match=r"exited with 3") as info:
        _bench(server, remote_dir, artifact=tiny_ptl, runner=runner)
    assert "c10::Error" in str(info.value)
    assert list(Path(remote_dir).iterdir()) == []


def test_unwritable_remote_dir_gives_a_push_error(
    device_env: tuple[FakeAdbServer, FakeDevice, str], tiny_ptl: Path, tmp_path: Path
) -> None:
    server, device, _ = device_env
    runner = _script(tmp_path, "speed_benchmark_torch", FAKE_SPEED_BENCHMARK_TORCH)
    # Outside the emulated device's root: mkdir works (it is the host's shell) but adbd-like
    # sync refuses to write there, as a real device refuses /system.
    outside = tmp_path / "outside"
    with pytest.raises(AdbBenchmarkError, match="pushing .* failed"):
        _bench(server, str(outside), artifact=tiny_ptl, runner=runner)
    assert list(outside.iterdir()) == []  # the run directory was still cleaned up


def test_wrong_serial_lists_connected_serials(
    device_env: tuple[FakeAdbServer, FakeDevice, str], tiny_ptl: Path
) -> None:
    server, _, remote_dir = device_env
    with pytest.raises(DeviceNotConnected) as info:
        _bench(server, remote_dir, artifact=tiny_ptl, runner=tiny_ptl, serial="NOSUCHPHONE")
    message = str(info.value)
    assert "'NOSUCHPHONE' is not connected" in message
    assert f"connected serials: {SERIAL} (device)" in message


def test_unauthorized_device_is_not_used(tmp_path: Path, tiny_ptl: Path) -> None:
    device = FakeDevice("LOCKED1", tmp_path / "dev", state="unauthorized")
    with FakeAdbServer([device]) as server:
        with pytest.raises(DeviceNotConnected, match="in state 'unauthorized'"):
            _bench(server, str(device.root), artifact=tiny_ptl, runner=tiny_ptl, serial="LOCKED1")
    assert device.shell_log == []


def test_server_down_gives_clear_error_and_spawns_nothing(
    tiny_ptl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_spawn(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"tried to start a process: {args}")

    # adbutils would otherwise run `adb start-server` when the connection is refused.
    monkeypatch.setattr("adbutils._adb.subprocess.run", no_spawn)
    port = free_port()
    with pytest.raises(AdbServerUnreachable, match=r"adb start-server") as info:
        run_adb_benchmark(tiny_ptl, "ptl", SERIAL, tiny_ptl, SHAPE, 1, 0, 1, adb_port=port)
    assert f"127.0.0.1:{port}" in str(info.value)


def test_missing_runner_names_the_binary_needed(tiny_ptl: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="speed_benchmark_torch runner not found"):
        run_adb_benchmark(tiny_ptl, "ptl", SERIAL, tmp_path / "nope", SHAPE, 1, 0, 1)
    with pytest.raises(FileNotFoundError, match="executor_runner"):
        run_adb_benchmark(tiny_ptl, "pte", SERIAL, tmp_path / "nope", SHAPE, 1, 0, 1)


def test_remote_dir_must_be_a_real_absolute_directory(tiny_ptl: Path) -> None:
    for bad in ("relative/dir", "/", "/data/../etc"):
        with pytest.raises(ValueError, match="remote_dir"):
            run_adb_benchmark(tiny_ptl, "ptl", SERIAL, tiny_ptl, SHAPE, 1, 0, 1, remote_dir=bad)


def test_pte_benchmark_through_executor_runner_contract(
    device_env: tuple[FakeAdbServer, FakeDevice, str], tmp_path: Path
) -> None:
    pytest.importorskip("executorch.runtime")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    server, device, remote_dir = device_env
    torch.manual_seed(0)
    exported = torch.export.export(Tiny().eval(), (torch.rand(SHAPE),))
    program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    pte = tmp_path / "tiny.pte"
    pte.write_bytes(program.to_executorch().buffer)
    runner = _script(tmp_path, "executor_runner", FAKE_EXECUTOR_RUNNER)

    result = _bench(
        server, remote_dir, artifact=pte, fmt="pte", runner=runner, warmup=2, iterations=4
    )

    assert result["runtime"] == "executor_runner"
    assert result["threads_applied"] == 1 and result["thread_control"] == "--cpu_threads + taskset"
    assert result["latency_ms"]["count"] == 4
    assert result["first_inference_ms"] > 0 and result["load_ms"] > 0
    assert result["remote_command"] in device.shell_log
    assert "--num_executions=7" in result["remote_command"]  # 1 first + 2 warm-up + 4 timed
    assert "--cpu_threads=1" in result["remote_command"]
    assert list(Path(remote_dir).iterdir()) == []


# -- parsers and helpers --------------------------------------------------------------------
def test_parse_pep_samples_handles_iostream_floats_and_ignores_other_records() -> None:
    output = textwrap.dedent(
        """\
        Starting benchmark.
        PyTorchObserver {"type": "NET", "unit": "us", "metric": "latency", "value": "1234"}
        PyTorchObserver {"type": "NET", "unit": "us", "metric": "latency", "value": "1.23457e+06"}
        PyTorchObserver {"type": "MEM", "unit": "kb", "metric": "peak", "value": "99"}
        Main run finished. Microseconds per iter: 617846.
        """
    )
    assert parse_pep_samples(output) == pytest.approx([1.234, 1234.57])


def test_parse_executor_runner_and_time_output() -> None:
    output = (
        "I 00:00:00.001 executorch:executor_runner.cpp:341] Resetting threadpool with num "
        "threads = 2\nI 00:00:00.01 executorch:x] Model loaded in 3.500000 ms.\n"
        "I x] Iteration 2 of 2: 1.250000 ms\nI x] Iteration 1 of 2: 9.000000 ms\n"
    )
    assert parse_executor_runner(output) == {
        "iterations_ms": [9.0, 1.25],
        "load_ms": 3.5,
        "threads": 2,
    }
    assert parse_peak_rss_mb("Max RSS (KiB): 2048\n") == 2.0  # toybox
    assert parse_peak_rss_mb("\tMaximum resident set size (kbytes): 1024\n") == 1.0  # GNU
    assert parse_peak_rss_mb("real 0.1\n") is None


def test_choose_cpus_prefers_fast_cores() -> None:
    probe = "0-7\n" + "".join(
        f"cpu {i} {1800000 if i < 4 else 2400000 if i < 7 else 3000000}\n" for i in range(8)
    )
    assert choose_cpus(probe, 1)[0] == [7]
    assert choose_cpus(probe, 3)[0] == [5, 6, 7]
    assert cpu_mask([5, 6, 7]) == "e0"
    # Offline CPUs are never chosen; without cpufreq the highest-numbered ones are.
    assert choose_cpus("0-2,4\ncpu 3 0\n", 2)[0] == [2, 4]
    with pytest.raises(AdbBenchmarkError, match="online CPU"):
        choose_cpus("0-1\n", 3)


def test_bench_modules_import_without_torch() -> None:
    """Scripts and the workflow import these cheaply; torch is only for the runner process."""
    code = (
        "import sys, mobileforge.bench.adb, mobileforge.bench.host, "
        "mobileforge.bench.devicelock, mobileforge.bench.stats; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
