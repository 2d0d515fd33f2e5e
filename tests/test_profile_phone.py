"""Profiles on phones: a ``.pte`` run by the phone's executor_runner with ETDump on, the ETDump
pulled over the real adb server and read as a host profile's is; a runner without
``--etdump_path`` (asked of the runner itself) gives a record saying why.

Two emulated phones (``tests/emulated_phone.py``) differ in their executor_runner: one built with
the event tracer (``tests.runners.EXECUTOR_RUNNER_ETDUMP``, which writes a real ETDump through
the pip runtime), one without (``EXECUTOR_RUNNER``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mobileforge import records
from mobileforge.bench.android.adb import run_adb_benchmark
from mobileforge.bench.android.etdump import etdump_support
from mobileforge.profile import record
from mobileforge.profile.classify import DELEGATE_REST
from mobileforge.profile.phone import profile_on_phone
from tests.runners import EXECUTOR_RUNNER, EXECUTOR_RUNNER_ETDUMP, runs_log, write_runner

SHAPE = [1, 3, 32, 32]
RUNS, WARMUP = 5, 2
SIDECAR = {"model": "tiny", "format": "pte", "variant": "fp32", "input_shape": SHAPE}
OPERATIONS = {"timeouts": {"command_s": 20, "run_s": 120, "wait_for_device_s": 30}, "retries": 0}


@pytest.fixture(scope="module")
def tiny_pte(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small conv net lowered to XNNPACK: its ETDump has delegated operators and a rest."""
    torch = pytest.importorskip("torch")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3), torch.nn.ReLU()
    ).eval()
    exported = torch.export.export(model, (torch.rand(SHAPE),))
    program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    path = tmp_path_factory.mktemp("phone-profile") / "tiny.pte"
    path.write_bytes(program.to_executorch().buffer)
    return path


def device(phone, adb_server) -> dict:
    return {"kind": "adb", "serial": phone.serial, "adb_host": "127.0.0.1",
            "adb_port": adb_server.port, "remote_dir": "/data/local/tmp/mobileforge",
            "threads": 1, "cooldown": {}}  # fmt: skip


def test_etdump_support_reads_gflags_help() -> None:
    with_flag = (
        "  Flags from executor_runner.cpp:\n    -cpu_threads (Number of CPU threads) type: int32\n"
        '    -etdump_path (Write ETDump data to this path.) type: string default: "model.etdump"\n'
        "    -model_path (Model serialized in flatbuffer format.) type: string\n"
    )
    assert etdump_support(with_flag, 1) is None
    without = with_flag.replace("-etdump_path", "-output_file")
    assert "built without the event tracer" in etdump_support(without, 1)
    assert "EXECUTORCH_ENABLE_EVENT_TRACER=ON" in etdump_support(without, 1)
    # a description naming the flag is not the flag
    assert etdump_support(without + "    -x (see --etdump_path_v2) type: bool\n", 1)
    assert "lists no flags" in etdump_support("Segmentation fault", 139)


@pytest.mark.slow  # a .pte export, then a benchmark and a profile runner process on the phone
def test_phone_profile_of_a_pte_through_its_etdump(
    adb_server, phones, tiny_pte: Path, tmp_path: Path
) -> None:
    phone = phones()
    runner = write_runner(tmp_path, "executor_runner", EXECUTOR_RUNNER_ETDUMP)
    settings = device(phone, adb_server)
    # Benchmark and profile are two processes at two moments on a shared machine: a
    # disagreement is measured once more (as the host profile's test does).
    for _attempt in range(2):
        bench = run_adb_benchmark(
            tiny_pte, "pte", phone.serial, runner, SHAPE, 1, warmup=3, iterations=20,
            adb_port=adb_server.port, timeouts=OPERATIONS["timeouts"],
        )  # fmt: skip
        raw = profile_on_phone(str(tiny_pte), SIDECAR, settings, OPERATIONS, str(runner),
                               RUNS, WARMUP)  # fmt: skip
        profile = record.from_raw(raw, SIDECAR, str(tiny_pte), "phone", "adb", WARMUP,
                                  bench["latency_ms"]["p50"])  # fmt: skip
        if profile["agrees"]:
            break
    records.check(records.Profile, profile, "test")
    assert profile["device_kind"] == "adb" and profile["unavailable"] is None
    assert profile["method"] == "etdump" and profile["runs"] == RUNS and profile["threads"] == 1
    names = [row["name"] for row in profile["layers"]]
    assert any(name.startswith("Convolution") for name in names), names  # XNNPACK's operators
    assert DELEGATE_REST in names
    assert sum(row["share"] for row in profile["layers"]) == pytest.approx(1.0, rel=0.05)
    assert profile["benchmark_p50_ms"] == bench["latency_ms"]["p50"]
    assert profile["agrees"] is True, profile["agreement"]
    # What ran on the phone: the runner with --etdump_path beside its run folder, 1 + warm-up +
    # runs executions, pinned to the fastest CPU; the ETDump was pulled and removed.
    (*_, profiled) = runs_log(phone.root)
    etdump_flags = [a for a in profiled["argv"] if a.startswith("--etdump_path=")]
    assert etdump_flags and "/data/local/tmp/mobileforge/run-" in etdump_flags[0]
    assert f"--num_executions={1 + WARMUP + RUNS}" in profiled["argv"]
    assert raw["affinity"] == [7] and len(raw["end_to_end_ms"]) == RUNS
    assert any("--help" in command for command in phone.shell_log)
    assert [p.name for p in (phone.root / "data/local/tmp/mobileforge").iterdir()] == ["cache"]


def test_phone_whose_runner_has_no_etdump_path_says_why(adb_server, phones, tmp_path: Path) -> None:
    phone = phones()
    runner = write_runner(tmp_path, "executor_runner", EXECUTOR_RUNNER)
    pte = tmp_path / "m.pte"
    pte.write_bytes(b"never loaded: the runner is asked before anything runs")

    raw = profile_on_phone(str(pte), SIDECAR, device(phone, adb_server), OPERATIONS,
                           str(runner), RUNS, WARMUP)  # fmt: skip

    assert "no --etdump_path" in raw["unavailable"]
    assert "EXECUTORCH_ENABLE_EVENT_TRACER=ON" in raw["unavailable"]
    assert runs_log(phone.root) == []  # detected from --help; the model never ran
    profile = record.unavailable(SIDECAR, str(pte), "phone", "adb", raw["unavailable"])
    records.check(records.Profile, profile, "test")
    assert profile["layers"] == [] and profile["agreement"].startswith("no profile: ")
