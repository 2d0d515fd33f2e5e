"""Host benchmark (a fresh runner process per repeat), latency statistics and the device lock.

The host benchmark is driven as the benchmark stage drives it:
:func:`mobileforge.bench.device.benchmark_on_device` with a host device entry.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mobileforge.bench.device import benchmark_on_device
from mobileforge.bench.devicelock import device_lock
from mobileforge.bench.host.repeats import run_host_repeats
from mobileforge.bench.stats import combine_runs, summarize_latencies
from tests.waiting import wait_for

SHAPE = [1, 3, 16, 16]
CPUS = len(os.sched_getaffinity(0))
THREADS = [1, 2] if CPUS >= 2 else [1]

RESULT_KEYS = {
    "format",
    "runtime",
    "artifact",
    "input_shape",
    "warmup",
    "iterations",
    "threads_requested",
    "threads_applied",
    "affinity",
    "load_ms",
    "first_inference_ms",
    "latency_ms",
    "rss_before_load_mb",
    "peak_rss_mb",
    "torch_version",
    "executorch_version",
    "python_version",
    "host",
}


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("models")
    model = Tiny().eval()
    paths = {"ptl": out / "tiny.ptl"}
    torch.jit.script(model)._save_for_lite_interpreter(str(paths["ptl"]))
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    except ImportError:
        return paths
    exported = torch.export.export(model, (torch.rand(SHAPE),))
    lowered = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    paths["pte"] = out / "tiny.pte"
    paths["pte"].write_bytes(lowered.to_executorch().buffer)
    return paths


# -- statistics -----------------------------------------------------------------------------
def test_summarize_latencies_known_values() -> None:
    samples = [float(v) for v in range(1, 21)]  # 1..20
    stats = summarize_latencies(list(reversed(samples)))
    assert stats["count"] == 20 and stats["min"] == 1.0 and stats["max"] == 20.0
    assert stats["mean"] == pytest.approx(10.5)
    assert stats["std"] == pytest.approx(5.766281, rel=1e-6)  # population std
    assert stats["p50"] == pytest.approx(10.5)
    assert stats["p90"] == pytest.approx(18.1)
    assert stats["p99"] == pytest.approx(19.81)
    assert stats["trimmed_mean"] == pytest.approx(sum(range(3, 19)) / 16)  # drops 2 per end


def test_trimmed_mean_drops_outliers_and_small_runs_keep_everything() -> None:
    spiky = [1.0] * 18 + [100.0, 0.0]
    assert summarize_latencies(spiky)["trimmed_mean"] == 1.0
    assert summarize_latencies([2.0, 4.0])["trimmed_mean"] == 3.0
    one = summarize_latencies([5.0])
    assert one["std"] == 0.0 and one["p99"] == 5.0


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [-1.0], [float("inf")]])
def test_summarize_latencies_rejects_nonsense(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        summarize_latencies(bad)


def test_combine_runs_reports_median_of_medians_and_run_to_run_cv() -> None:
    runs = [summarize_latencies([p] * 10) for p in (10.0, 12.0, 11.0)]
    combined = combine_runs(runs)
    assert combined["p50"] == 11.0 and combined["p50_runs"] == [10.0, 12.0, 11.0]
    assert combined["cv"] == pytest.approx(1.0 / 11.0)  # sample std 1.0 over mean 11.0
    assert combined["min"] == 10.0 and combined["max"] == 12.0 and combined["count"] == 30
    assert combined["trimmed_mean"] == 11.0 and combined["runs"] == 3
    assert combine_runs(runs[:1])["cv"] is None  # one run cannot show its spread
    with pytest.raises(ValueError):
        combine_runs([])


# -- host benchmark -------------------------------------------------------------------------
def _host_benchmark(
    artifact: Path,
    fmt: str,
    threads: int,
    warmup: int,
    iterations: int,
    engine: str | None = None,
) -> dict:
    """One repeat on the host, the way the benchmark stage asks for it."""
    device = {"kind": "host", "threads": threads, "warmup": warmup, "iterations": iterations,
              "repeats": 1, "cooldown": {}}  # fmt: skip
    sidecar = {"format": fmt, "input_shape": SHAPE, "engine": engine}
    return benchmark_on_device(str(artifact), sidecar, device)


def _check_common(result: dict, fmt: str, threads: int, iterations: int) -> None:
    assert RESULT_KEYS <= result.keys()
    (run,) = result["runs"]  # one repeat: its own samples and timed loop
    assert result["format"] == fmt
    assert result["threads_requested"] == threads == result["threads_applied"]
    assert len(result["affinity"]) == threads
    assert result["latency_ms"]["count"] == iterations == len(run["samples_ms"])
    assert summarize_latencies(run["samples_ms"]) == run["latency_ms"]
    assert combine_runs([run["latency_ms"]]) == result["latency_ms"]
    assert result["load_ms"] > 0 and result["first_inference_ms"] > 0
    assert 0 < result["rss_before_load_mb"] <= result["peak_rss_mb"]
    assert result["torch_version"] == torch.__version__
    assert result["host"]["cpu_count"] == os.cpu_count()
    assert result["input_shape"] == SHAPE
    loop = run["timed_loop"]
    assert loop["process_cpu_ms"] > 0 and loop["other_processes_cpus"] >= 0
    assert isinstance(result["warnings"], list)  # contention warnings, if any
    json.dumps(result)


@pytest.mark.parametrize("threads", THREADS)
def test_ptl_host_benchmark_applies_threads(models: dict[str, Path], threads: int) -> None:
    result = _host_benchmark(models["ptl"], "ptl", threads, warmup=2, iterations=10)
    _check_common(result, "ptl", threads, 10)
    assert result["runtime"] == "lite_interpreter"
    assert result["torch_interop_threads"] == 1
    assert result["executorch_version"] is None


@pytest.mark.parametrize("threads", THREADS)
def test_pte_host_benchmark_applies_threads(models: dict[str, Path], threads: int) -> None:
    if "pte" not in models:
        pytest.skip("executorch is not installed")
    result = _host_benchmark(models["pte"], "pte", threads, warmup=2, iterations=10)
    _check_common(result, "pte", threads, 10)
    assert result["runtime"] == "executorch"
    assert result["executorch_version"]
    assert "threadpool" in result["thread_control"] or "pte" in result["thread_control"]


def test_host_repeats_run_fresh_processes_and_combine_them(models: dict[str, Path]) -> None:
    result = run_host_repeats(models["ptl"], "ptl", SHAPE, 1, 1, 8, repeats=2,
                              cooldown={"pause_s": 0.1})  # fmt: skip
    assert result["repeats"] == 2 and len(result["runs"]) == 2
    starts = [run["process_start_unix"] for run in result["runs"]]
    assert starts[0] < starts[1]  # two processes, one after the other
    pids = {run["pid"] for run in result["runs"]}
    assert len(pids) == 2 and os.getpid() not in pids
    # Each loaded the artifact itself; none paid for the imports: they were paid once, by the
    # serving runner. Compared within this run: a repeat that imported torch itself would take
    # about what the serving runner took, not a tenth of it.
    paid_ms = result["timing"]["import_s"] * 1000
    for run in result["runs"]:
        assert run["load_ms"] > 0 and 0 <= run["import_ms"] < paid_ms / 10
    assert result["latency_ms"] == combine_runs([run["latency_ms"] for run in result["runs"]])
    for run in result["runs"]:
        assert len(run["samples_ms"]) == 8 and run["cooldown"]["pause_s"] == 0.1
        assert {"zones", "cur_freq_khz"} <= run["thermal_before"].keys()
    assert "samples_ms" not in result and result["threads_applied"] == 1
    assert result["timing"]["runner_s"] <= result["timing"]["job_s"]
    json.dumps(result)


def test_host_repeats_report_a_crashing_run_with_its_traceback(tmp_path: Path) -> None:
    broken = tmp_path / "broken.ptl"
    broken.write_bytes(b"not a model")
    with pytest.raises(RuntimeError, match="exited with 1") as error:
        run_host_repeats(broken, "ptl", SHAPE, 1, 0, 1, repeats=2)
    assert "Traceback" in str(error.value)  # the child's own error, from the runner's stderr
    broken.write_bytes(b"this is not a zip archive")
    with pytest.raises(RuntimeError, match="exited with 1") as error:
        _host_benchmark(broken, "ptl", 1, warmup=0, iterations=1)
    assert "Traceback" in str(error.value)


def test_quantized_engine_is_set_before_load_and_recorded(models: dict[str, Path]) -> None:
    engine = "qnnpack" if "qnnpack" in torch.backends.quantized.supported_engines else None
    if engine is None:
        pytest.skip("this torch build has no qnnpack engine")
    result = _host_benchmark(models["ptl"], "ptl", 1, 0, 2, engine=engine)
    assert result["quantized_engine"] == engine
    with pytest.raises(RuntimeError, match="'nope' is not in this torch build"):
        _host_benchmark(models["ptl"], "ptl", 1, 0, 1, engine="nope")


def test_more_threads_than_cpus_is_refused(models: dict[str, Path]) -> None:
    with pytest.raises(RuntimeError, match="CPU\\(s\\) are available"):
        _host_benchmark(models["ptl"], "ptl", CPUS + 1, warmup=0, iterations=1)


def test_bad_arguments_fail_before_starting_a_process(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        _host_benchmark(tmp_path / "missing.ptl", "ptl", 1, 0, 1)
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown format"):
        _host_benchmark(tmp_path / "m.onnx", "onnx", 1, 0, 1)


# -- device lock ----------------------------------------------------------------------------
HOLDER = textwrap.dedent(
    """\
    import sys, time
    from mobileforge.bench.devicelock import device_lock
    lock_dir, log, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
    name = sys.argv[4] if len(sys.argv) > 4 else "phone1"
    with device_lock(name, lock_dir):
        with open(log, "a") as fh:
            fh.write(f"{name} acquired {time.time()}\\n")
        time.sleep(hold)
        with open(log, "a") as fh:
            fh.write(f"{name} released {time.time()}\\n")
    """
)


def _holder(lock_dir: Path, log: Path, hold: float, name: str = "phone1") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_dir), str(log), str(hold), name],
        stderr=subprocess.PIPE,
        text=True,
    )


def _events(log: Path) -> list[tuple[str, str, float]]:
    rows = [line.split() for line in log.read_text().splitlines()]
    return [(name, what, float(t)) for name, what, t in rows]


def test_device_lock_serialises_two_processes(tmp_path: Path) -> None:
    log = tmp_path / "log"
    first = _holder(tmp_path / "locks", log, hold=1.0)
    wait_for(lambda: log.exists() and "acquired" in log.read_text(), "the holder's lock", 20)
    second = _holder(tmp_path / "locks", log, hold=0.0)
    _, err1 = first.communicate(timeout=30)
    _, err2 = second.communicate(timeout=30)
    assert first.returncode == second.returncode == 0
    events = _events(log)
    assert [e[1] for e in events] == ["acquired", "released", "acquired", "released"]
    assert events[2][2] >= events[1][2]  # the second got the device after the first let go
    assert err1 == ""
    assert err2.count("is busy") == 1 and "waiting" in err2


def test_different_devices_do_not_wait_for_each_other(tmp_path: Path) -> None:
    log = tmp_path / "log"
    a = _holder(tmp_path / "locks", log, hold=1.5, name="phoneA")
    b = _holder(tmp_path / "locks", log, hold=1.5, name="phoneB")
    _, err_a = a.communicate(timeout=30)
    _, err_b = b.communicate(timeout=30)
    events = _events(log)
    acquired = sorted(t for _, what, t in events if what == "acquired")
    released = sorted(t for _, what, t in events if what == "released")
    assert acquired[1] < released[0]  # overlapping holds
    assert "busy" not in err_a + err_b


def test_lock_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    log = tmp_path / "log"
    victim = _holder(tmp_path / "locks", log, hold=60.0)
    wait_for(lambda: log.exists() and "acquired" in log.read_text(), "the holder's lock", 20)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    with device_lock("phone1", tmp_path / "locks", timeout_s=10) as path:
        assert path.read_text().startswith(f"pid {os.getpid()} ")


def test_bounded_wait_times_out_and_names_are_checked(tmp_path: Path) -> None:
    log = tmp_path / "log"
    holder = _holder(tmp_path / "locks", log, hold=60.0)
    try:
        wait_for(lambda: log.exists() and "acquired" in log.read_text(), "the holder's lock", 20)
        with pytest.raises(TimeoutError, match="still busy") as error:
            with device_lock("phone1", tmp_path / "locks", timeout_s=0.3):
                pass
        # The wait gave up on its own, while the holder still held the device (it holds it for
        # a minute and is killed below): an order, not a wall-clock bound.
        assert holder.poll() is None and "released" not in log.read_text()
        assert f"pid {holder.pid} " in str(error.value)  # and it names who holds it
    finally:
        holder.kill()
        holder.communicate(timeout=30)
    with pytest.raises(ValueError, match="must match"):
        with device_lock("../etc/passwd", tmp_path / "locks"):
            pass
