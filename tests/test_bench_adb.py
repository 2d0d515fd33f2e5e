"""The adb benchmark path: the real adb server and adbutils client, an emulated phone behind it.

Each test connects its own :class:`tests.emulated_phone.EmulatedPhone` (an adbd on loopback)
to the session's real adb server (``tests/adb_server.py``) and benchmarks through
:func:`run_adb_benchmark`, so client, server, transport protocol, shell v2, sync, quoting and
parsing are all exercised for real. Runners are scripts with the real binaries' flags and
output (``tests/runners.py``).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from mobileforge.bench.android import probes, pushcache
from mobileforge.bench.android.adb import (
    AdbBenchmarkError,
    AdbServerUnreachable,
    DeviceGone,
    DeviceHung,
    DeviceNotConnected,
    parse_executor_runner,
    parse_pep_samples,
    run_adb_benchmark,
)
from mobileforge.bench.runstate import RunState
from tests.adb_server import free_port
from tests.runners import (
    EXECUTOR_RUNNER,
    LIGHT_RUNNER,
    SPEED_BENCHMARK_TORCH,
    runs_log,
    write_runner,
)

SHAPE = [1, 3, 8, 8]
REMOTE = "/data/local/tmp/mobileforge"
#: The emulated phones' default CPUs: 0-3 at 1.8 GHz, 4-6 at 2.4, 7 at 3.0.
FASTEST = 7
#: What the old CPU probe ran: a loop with ${c##*cpu}, which some vendor shells reject.
OLD_CPU_PROBE = (
    "cat /sys/devices/system/cpu/online 2>/dev/null; "
    "for c in /sys/devices/system/cpu/cpu[0-9]*; do n=${c##*cpu}; "
    'f=$(cat "$c/cpufreq/cpuinfo_max_freq" 2>/dev/null); echo "cpu $n ${f:-0}"; done'
)


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
    # Traced, not scripted: the process's first torch.jit.script of nn.Conv2d once failed in a
    # fresh clone ("builtin cannot be used as a value"); the adb path only needs a valid .ptl.
    torch.jit.trace(Tiny().eval(), torch.rand(1, 3, 8, 8))._save_for_lite_interpreter(str(path))
    return path


@pytest.fixture
def light(tmp_path: Path) -> Path:
    return write_runner(tmp_path / "host-bin", "speed_benchmark_torch", LIGHT_RUNNER)


def bench(adb_server, phone, artifact: Path, runner: Path, **kwargs: object) -> dict:
    args: dict[str, object] = {
        "fmt": "ptl",
        "serial": phone.serial,
        "input_shape": SHAPE,
        "threads": 1,
        "warmup": 2,
        "iterations": 5,
        "adb_port": adb_server.port,
        "timeouts": {"command_s": 20, "run_s": 120, "wait_for_device_s": 30},
    }
    args.update(kwargs)
    return run_adb_benchmark(artifact, runner=runner, **args)  # type: ignore[arg-type]


def run_commands(phone) -> list[str]:
    """Shell commands that ran a runner (the rest are probes, sweeps, snapshots)."""
    return [c for c in phone.shell_log if "/cache/" in c and "--" in c and "pkill" not in c]


# -- contracts of the two runners, end to end -----------------------------------------------
def test_ptl_benchmark_end_to_end(adb_server, phones, tiny_ptl: Path, tmp_path: Path) -> None:
    phone = phones()
    runner = write_runner(tmp_path, "speed_benchmark_torch", SPEED_BENCHMARK_TORCH)
    result = bench(adb_server, phone, tiny_ptl, runner, repeats=2)

    assert result["runtime"] == "speed_benchmark_torch"
    assert result["repeats"] == 2 and len(result["runs"]) == 2
    latency = result["latency_ms"]
    assert latency["runs"] == 2 and latency["count"] == 10 and latency["cv"] is not None
    p50s = [run["latency_ms"]["p50"] for run in result["runs"]]
    assert latency["p50"] == pytest.approx(sum(p50s) / 2)  # the median of two medians
    for run in result["runs"]:
        assert len(run["samples_ms"]) == 5 and all(s > 0 for s in run["samples_ms"])
    assert result["device_info"] == {
        "serial": phone.serial,
        "brand": "mobileforge",
        "manufacturer": "Emulated",
        "model": "Loopback 1",
        "android_release": "14",
        "sdk": "34",
        "abi": "arm64-v8a",
        "soc_model": None,
        "cpu_max_freq_khz": {str(c): phone.cpus[c] for c in range(8)},
    }
    assert result["threads_requested"] == 1 and result["threads_applied"] is None
    assert "no thread flag" in result["null_reasons"]["threads_applied"]
    assert result["load_ms"] is None and "load_ms" in result["null_reasons"]
    assert result["affinity"] == [FASTEST]
    assert (phone.root / "taskset.log").read_text().split() == ["80", "80"]
    assert result["peak_rss_mb"] > 10  # the phone's `time -v` measured a torch process
    json.dumps(result)  # the result is written as a JSON sidecar

    (start, *_) = runs_log(phone.root)
    assert start["argv"][1:] == [
        "--input_dims=1,3,8,8",
        "--input_type=float",
        "--warmup=2",
        "--iter=5",
        "--report_pep=true",
    ]
    model = start["argv"][0].removeprefix("--model=")
    assert model.endswith("/tiny.ptl") and f"{REMOTE}/cache/" in model
    # Runner and artifact went through sync, into the push cache; no run folder is left.
    assert [Path(p).name for p in phone.pushed] == [
        "speed_benchmark_torch.partial",
        "tiny.ptl.partial",
    ]
    assert result["pushed"] == [p.removesuffix(".partial") for p in phone.pushed]
    leftovers = list((phone.root / REMOTE.lstrip("/")).iterdir())
    assert [p.name for p in leftovers] == ["cache"]


@pytest.mark.slow
def test_pte_benchmark_through_executor_runner_contract(adb_server, phones, tmp_path: Path) -> None:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    phone = phones()
    torch.manual_seed(0)
    exported = torch.export.export(Tiny().eval(), (torch.rand(SHAPE),))
    program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    pte = tmp_path / "tiny.pte"
    pte.write_bytes(program.to_executorch().buffer)
    runner = write_runner(tmp_path, "executor_runner", EXECUTOR_RUNNER)

    result = bench(adb_server, phone, pte, runner, fmt="pte", warmup=2, iterations=4)

    assert result["runtime"] == "executor_runner"
    assert result["threads_applied"] == 1 and result["thread_control"] == "--cpu_threads + taskset"
    assert result["latency_ms"]["count"] == 4
    assert result["first_inference_ms"] > 0 and result["load_ms"] > 0
    assert "--num_executions=7" in result["remote_command"]  # 1 first + 2 warm-up + 4 timed
    assert "--cpu_threads=1" in result["remote_command"]
    assert any(result["remote_command"] in command for command in phone.shell_log)


# -- keep what worked working ---------------------------------------------------------------
def test_shell_metacharacters_in_artifact_name_are_quoted(
    adb_server, phones, tiny_ptl: Path, light: Path, tmp_path: Path
) -> None:
    phone = phones()
    # Each payload first does a bare `cd` (to $HOME, inside the phone) so a marker would
    # survive the removal of the run folder; `&` and quotes check the quoting of quotes.
    evil_name = "x;cd;touch PWNED1;$(cd;touch PWNED2)`cd;touch PWNED3`'\" &.ptl"
    evil = tmp_path / "models" / evil_name
    evil.parent.mkdir()
    shutil.copy(tiny_ptl, evil)

    result = bench(adb_server, phone, evil, light, warmup=0, iterations=2)

    assert result["latency_ms"]["count"] == 2
    # Pushed and installed under its literal name; the runner got that literal path as one argv.
    assert Path(phone.pushed[-1]).name == evil_name + ".partial"
    assert runs_log(phone.root)[-1]["argv"][0].endswith("/" + evil_name)
    words = shlex.split(result["remote_command"])
    assert any(w.startswith("--model=") and w.endswith("/" + evil_name) for w in words)
    for where in (phone.root, tmp_path, Path.cwd()):
        assert not list(where.rglob("PWNED*")), where


def test_crashing_runner_reports_exit_code_and_output_and_is_not_retried(
    adb_server, phones, tiny_ptl: Path, light: Path
) -> None:
    phone = phones()
    (phone.root / "crash").touch()
    with pytest.raises(AdbBenchmarkError, match=r"exited with 3") as info:
        bench(adb_server, phone, tiny_ptl, light, retries=2)
    assert "c10::Error" in str(info.value)
    assert len(run_commands(phone)) == 1  # a crash is the runner's answer, not a fault
    assert [p.name for p in (phone.root / REMOTE.lstrip("/")).iterdir()] == ["cache"]


def test_offline_and_unauthorized_phones_fail_fast_with_serial_and_state(
    adb_server, phones, tiny_ptl: Path, light: Path
) -> None:
    locked = phones(state="unauthorized", unauthorized=True)
    with pytest.raises(DeviceNotConnected, match="in state 'unauthorized'") as info:
        bench(adb_server, locked, tiny_ptl, light)
    assert repr(locked.serial) in str(info.value)
    assert locked.shell_log == []

    phone = phones()
    phone.unplug()
    adb_server.wait_state(phone.serial, "offline")
    with pytest.raises(DeviceNotConnected, match="in state 'offline'") as info:
        bench(adb_server, phone, tiny_ptl, light)
    assert repr(phone.serial) in str(info.value)


def test_wrong_serial_lists_connected_serials(
    adb_server, phones, tiny_ptl: Path, light: Path
) -> None:
    phone = phones()
    with pytest.raises(DeviceNotConnected) as info:
        bench(adb_server, phone, tiny_ptl, light, serial="NOSUCHPHONE")
    message = str(info.value)
    assert "'NOSUCHPHONE' is not connected" in message
    assert f"{phone.serial} (device)" in message


def test_server_down_gives_clear_error_and_spawns_nothing(
    tiny_ptl: Path, light: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_spawn(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"tried to start a process: {args}")

    # adbutils would otherwise run `adb start-server` when the connection is refused.
    monkeypatch.setattr("adbutils._adb.subprocess.run", no_spawn)
    port = free_port()
    with pytest.raises(AdbServerUnreachable, match=r"adb start-server") as info:
        run_adb_benchmark(tiny_ptl, "ptl", "X", light, SHAPE, 1, 0, 1, adb_port=port)
    assert f"127.0.0.1:{port}" in str(info.value)


def test_missing_runner_and_bad_remote_dir_fail_before_any_connection(
    tiny_ptl: Path, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError, match="speed_benchmark_torch runner not found"):
        run_adb_benchmark(tiny_ptl, "ptl", "X", tmp_path / "nope", SHAPE, 1, 0, 1)
    with pytest.raises(FileNotFoundError, match="executor_runner"):
        run_adb_benchmark(tiny_ptl, "pte", "X", tmp_path / "nope", SHAPE, 1, 0, 1)
    for bad in ("relative/dir", "/", "/data/../etc"):
        with pytest.raises(ValueError, match="remote_dir"):
            run_adb_benchmark(tiny_ptl, "ptl", "X", tiny_ptl, SHAPE, 1, 0, 1, remote_dir=bad)


def test_unwritable_remote_dir_gives_a_push_error(
    adb_server, phones, tiny_ptl: Path, light: Path
) -> None:
    phone = phones()
    with pytest.raises(AdbBenchmarkError, match="pushing .* failed"):
        bench(adb_server, phone, tiny_ptl, light, remote_dir="/system/mobileforge")


# -- fewer round trips ----------------------------------------------------------------------
def test_second_job_skips_probe_and_pushes_and_sweeps_stale_runs(
    adb_server, phones, tiny_ptl: Path, light: Path
) -> None:
    phone = phones()
    state = RunState("phone-under-test", run_id="")  # one run's memory, as two jobs share it
    bench(adb_server, phone, tiny_ptl, light, state=state)
    pushed, probes_sent = len(phone.pushed), phone.shell_log.count(probes.PROBE_COMMAND)
    stale = phone.root / REMOTE.lstrip("/") / "run-0123456789ab"
    stale.mkdir()
    (stale / "speed_benchmark_torch").write_text("left by a cut run")

    before = len(phone.shell_log)
    second = bench(adb_server, phone, tiny_ptl, light, state=state, repeats=3)

    assert len(phone.pushed) == pushed and second["pushed"] == []  # same sha256: no push
    assert phone.shell_log.count(probes.PROBE_COMMAND) == probes_sent == 1
    assert not stale.exists()
    # One sweep-and-cache-check, then one command per run: nothing else reached the phone.
    assert len(phone.shell_log) - before == second["timing"]["round_trips"] == 1 + 3
    assert len(runs_log(phone.root)) == 1 + 3


def test_probe_degrades_to_unpinned_with_a_note(
    adb_server, phones, tiny_ptl: Path, light: Path
) -> None:
    phone = phones()
    missing = phone.root / "system/bin/taskset"  # a phone without taskset
    missing.write_text('#!/bin/sh\necho "/system/bin/sh: taskset: not found" >&2\nexit 127\n')
    result = bench(adb_server, phone, tiny_ptl, light)
    assert result["affinity"] is None and result["thread_control"] == "none"
    assert "unpinned" in result["null_reasons"]["affinity"]
    assert any("unpinned" in w for w in result["warnings"])
    assert result["latency_ms"]["count"] == 5


def test_shell_without_loops_still_benchmarks_pinned(
    adb_server, phones, tiny_ptl: Path, light: Path
) -> None:
    phone = phones(loopless=True)
    # What failed before: the loop of the old CPU probe is refused by this shell.
    old = subprocess.run(
        [adb_server.adb, "-P", str(adb_server.port), "-s", phone.serial, "shell", OLD_CPU_PROBE],
        env=adb_server.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert old.returncode == 2 and "bad substitution" in old.stderr

    result = bench(adb_server, phone, tiny_ptl, light, threads=2)

    assert result["affinity"] == [6, FASTEST]  # 7 at 3.0 GHz, then the highest 2.4 GHz CPU
    assert result["device_info"]["cpu_max_freq_khz"]["7"] == 3000000
    assert result["latency_ms"]["count"] == 5
    assert result["peak_rss_mb"] is not None


def test_old_executor_runner_is_told_to_upgrade(
    adb_server, phones, tmp_path: Path, light: Path
) -> None:
    phone = phones()
    (phone.root / "old_runner").touch()
    pte = tmp_path / "m.pte"
    pte.write_bytes(b"not parsed by the light runner")
    with pytest.raises(AdbBenchmarkError, match=r"older than ExecuTorch v1\.3") as info:
        bench(adb_server, phone, pte, light, fmt="pte")
    assert "unknown command line flag 'print_output'" in str(info.value)


# -- disconnects and hangs ------------------------------------------------------------------
def _unplug_when_runner_starts(phone, replug_after_s: float | None) -> threading.Event:
    """Unplug the phone once its first runner process has started (replug later, if asked).

    That runner sleeps 60 s first, so the unplug cuts it mid-run; later runners do not sleep.
    """
    done = threading.Event()

    def unplug_once_started() -> None:
        deadline = time.monotonic() + 60
        while not runs_log(phone.root) and time.monotonic() < deadline:
            time.sleep(0.05)
        phone.unplug()
        if replug_after_s is not None:
            threading.Timer(replug_after_s, phone.replug).start()
        done.set()

    def hook(command: str) -> None:
        if "--report_pep" not in command:
            return
        if done.is_set():
            (phone.root / "runner_sleep").write_text("0")  # the retry runs at normal speed
        else:
            threading.Thread(target=unplug_once_started, daemon=True).start()

    (phone.root / "runner_sleep").write_text("60")
    phone.on_shell = hook
    return done


def test_unplug_mid_run_then_reconnect_retries_and_kills_the_cut_runner(
    adb_server, phones, tiny_ptl: Path, light: Path
) -> None:
    phone = phones()
    unplugged = _unplug_when_runner_starts(phone, replug_after_s=1.0)

    result = bench(adb_server, phone, tiny_ptl, light, retries=1, repeats=2)

    assert unplugged.is_set()
    assert result["retries_used"] == 1 and result["repeats"] == 2
    assert [run["attempt"] for run in result["runs"]] == [2, 2]
    first, *rest = runs_log(phone.root)
    # The cut runner kept running on the phone until the retry's sweep killed it, before any
    # new run started: never two runs on one phone.
    assert "killed" in first and "end" not in first
    assert all(first["killed"] <= run["start"] for run in rest) and len(rest) == 2
    assert [p.name for p in (phone.root / REMOTE.lstrip("/")).iterdir()] == ["cache"]


def test_unplug_without_reconnect_names_the_phone_and_fails_later_jobs_fast(
    adb_server, phones, tiny_ptl: Path, light: Path
) -> None:
    phone = phones()
    _unplug_when_runner_starts(phone, replug_after_s=None)
    state = RunState("gone-phone", run_id="")
    timeouts = {"command_s": 10, "run_s": 120, "wait_for_device_s": 2}

    with pytest.raises(DeviceGone) as info:
        bench(adb_server, phone, tiny_ptl, light, retries=2, state=state, timeouts=timeouts)
    message = str(info.value)
    assert phone.serial in message and "did not come back within 2 s" in message
    assert "was cut" in message and "--report_pep=true" in message  # the command cut
    assert state.gone() is not None

    commands = len(phone.shell_log)
    with pytest.raises(DeviceGone, match="failing fast") as info:
        bench(adb_server, phone, tiny_ptl, light, state=state, timeouts=timeouts)
    assert phone.serial in str(info.value)
    assert len(phone.shell_log) == commands  # the phone was not waited for again


def test_hung_phone_times_out_once_then_fails_fast(
    adb_server, phones, tiny_ptl: Path, light: Path
) -> None:
    phone = phones()
    state = RunState("hung-phone", run_id="")
    bench(adb_server, phone, tiny_ptl, light, state=state)  # probed and cached while healthy
    phone.hang = True
    timeouts = {"command_s": 1.0, "run_s": 5.0, "wait_for_device_s": 5}

    with pytest.raises(DeviceHung) as info:
        bench(adb_server, phone, tiny_ptl, light, state=state, timeouts=timeouts)
    assert phone.serial in str(info.value) and "within 1 s" in str(info.value)
    assert state.gone() is not None

    hung_commands = len(phone.shell_log)
    with pytest.raises(DeviceGone, match="failing fast"):
        bench(adb_server, phone, tiny_ptl, light, state=state, timeouts=timeouts)
    assert phone.shell_log[hung_commands:] == ["echo ok"]  # one short re-check, nothing else


def test_phone_hanging_mid_run_is_caught_by_the_heartbeat_not_the_run_timeout(
    adb_server, phones, tiny_ptl: Path, light: Path
) -> None:
    phone = phones()
    state = RunState("hangs-mid-run", run_id="")
    bench(adb_server, phone, tiny_ptl, light, state=state)  # probed and cached while healthy
    (phone.root / "runner_sleep").write_text("120")  # a long, silent run ...

    def hang_when_the_runner_starts(command: str) -> None:
        if "--report_pep" in command:
            phone.hang = True  # ... during which the phone stops answering anything new

    phone.on_shell = hang_when_the_runner_starts
    timeouts = {"command_s": 1.0, "run_s": 300, "wait_for_device_s": 5}
    with pytest.raises(DeviceHung, match="stopped answering while running") as info:
        bench(adb_server, phone, tiny_ptl, light, state=state, timeouts=timeouts)
    assert phone.serial in str(info.value) and "--report_pep=true" in str(info.value)
    assert state.gone() is not None


def test_slow_runner_on_a_healthy_phone_is_not_taken_for_a_hung_phone(
    adb_server, phones, tiny_ptl: Path, light: Path
) -> None:
    phone = phones()
    (phone.root / "runner_sleep").write_text("30")
    state = RunState("slow-phone", run_id="")
    timeouts = {"command_s": 10, "run_s": 1.5, "wait_for_device_s": 5}
    with pytest.raises(AdbBenchmarkError, match="runner itself did not finish") as info:
        bench(adb_server, phone, tiny_ptl, light, state=state, timeouts=timeouts)
    assert "timeouts.run_s" in str(info.value)
    assert state.gone() is None
    (slow,) = runs_log(phone.root)
    assert "killed" in slow  # the runner was stopped, not left running


# -- thermal state --------------------------------------------------------------------------
def test_hot_phone_cools_down_before_each_run(
    adb_server, phones, tiny_ptl: Path, light: Path
) -> None:
    cooling = {"cpu-big": lambda t: max(30.0, 60.0 - 12.0 * t), "battery": 31.0}
    phone = phones(thermal=cooling)
    cooldown = {"below_c": 45.0, "max_wait_s": 30, "poll_s": 0.2, "pause_s": 0, "zones": ""}

    result = bench(adb_server, phone, tiny_ptl, light, cooldown=cooldown, repeats=2)

    first = result["runs"][0]
    assert first["cooldown"]["start_c"] >= 45.0 and first["cooldown"]["waited_s"] > 0
    assert first["cooldown"]["reached"] and first["cooldown"]["end_c"] < 45.0
    zones = first["thermal_before"]["zones"]
    assert {z["type"] for z in zones.values()} == {"cpu-big", "battery"}  # unreadable: skipped
    assert max(z["temp_c"] for z in zones.values()) < 45.0
    assert first["thermal_after"]["cur_freq_khz"]["7"] == 1500000
    assert result["thermal"]["before_c"] < 45.0 and result["warnings"] == []


def test_phone_that_stays_hot_runs_after_the_limit_with_a_warning(
    adb_server, phones, tiny_ptl: Path, light: Path
) -> None:
    phone = phones(thermal={"cpu-big": 70.0})
    cooldown = {"below_c": 45.0, "max_wait_s": 0.5, "poll_s": 0.1, "pause_s": 0, "zones": "cpu"}
    result = bench(adb_server, phone, tiny_ptl, light, cooldown=cooldown)
    assert result["latency_ms"]["count"] == 5
    assert result["runs"][0]["cooldown"]["reached"] is False
    assert any("still 70.0 °C" in w for w in result["warnings"])
    assert result["thermal"] == {"before_c": 70.0, "after_c": 70.0}


# -- parsers --------------------------------------------------------------------------------
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
    assert probes.parse_peak_rss_mb("Max RSS (KiB): 2048\n") == 2.0  # toybox
    assert probes.parse_peak_rss_mb("\tMaximum resident set size (kbytes): 1024\n") == 1.0  # GNU
    assert probes.parse_peak_rss_mb("real 0.1\n") is None


def test_probe_parsing_and_cpu_choice() -> None:
    output = "\n".join(
        [
            f"{probes.MARK}props",
            "[ro.product.model]: [Pixel 7]",
            "[ro.soc.model]: []",
            f"{probes.MARK}online",
            "0-2,4",
            f"{probes.MARK}maxfreq",
            *(f"/sys/devices/system/cpu/cpu{c}/cpufreq/cpuinfo_max_freq:{f}"
              for c, f in [(0, 1800000), (1, 1800000), (2, 2400000), (4, 2400000)]),
            f"{probes.MARK}affinity",
            "pid 99's current affinity mask: 17",
            f"{probes.MARK}time0",
            "sh: /system/bin/time: not found",
            f"{probes.MARK}time1",
            "\tMaximum resident set size (kbytes): 1024",
            f"{probes.MARK}end",
        ]
    )  # fmt: skip
    probe = probes.parse_probe(output)
    assert probe["info"]["model"] == "Pixel 7" and probe["info"]["soc_model"] is None
    assert probe["online"] == [0, 1, 2, 4] and probe["allowed"] == [0, 1, 2, 4]
    assert probe["time_binary"] == "/usr/bin/time"
    assert probes.choose_cpus(probe, 2) == ([2, 4], None)
    assert probes.cpu_mask([2, 4]) == "14"
    with pytest.raises(ValueError, match="online CPU"):
        probes.choose_cpus(probe, 5)
    bare = probes.parse_probe(f"{probes.MARK}props\n{probes.MARK}end\n")
    assert bare["online"] is None and probes.choose_cpus(bare, 1)[0] is None
    assert "peak_rss_mb" in bare["notes"] and "affinity" in bare["notes"]


def test_pkill_pattern_spares_the_shell_that_runs_it() -> None:
    pattern = pushcache.process_pattern("/data/local/tmp/mobileforge/cache/")
    command = pushcache.prepare_command("/data/local/tmp/mobileforge", ["/data/x"])
    grep = subprocess.run(["grep", "-E", pattern], input=command, capture_output=True, text=True)
    assert grep.returncode == 1  # the shell's own command line does not match
    runner = "taskset 80 /data/local/tmp/mobileforge/cache/ab12/speed_benchmark_torch --iter=5"
    grep = subprocess.run(["grep", "-E", pattern], input=runner, capture_output=True, text=True)
    assert grep.returncode == 0


def test_bench_modules_import_without_torch() -> None:
    """Scripts and the workflow import these cheaply; torch is only for the runner process."""
    code = (
        "import sys, mobileforge.bench.android.adb, mobileforge.bench.android.etdump, "
        "mobileforge.profile.phone, mobileforge.bench.host.repeats, "
        "mobileforge.bench.farm, "
        "mobileforge.bench.devicelock, mobileforge.bench.stats, mobileforge.salvage; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
