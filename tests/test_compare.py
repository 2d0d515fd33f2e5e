"""Paired comparisons: interleaved rounds, the A/A control, contention, the CLI on real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mobileforge.bench import compare
from tests.paired import ScriptedTurns, record_of

SETTINGS = compare.Settings(rounds=11, runs_per_turn=7, resamples=400)


def _quiet(_line: str) -> None:
    pass


def test_ratios_and_verdicts_come_from_per_round_pairs():
    turns = ScriptedTurns([2.0, 3.0, 2.0, 2.0])  # the last is the A/A copy of the first
    record = compare.run_comparison(turns, list("abcd"), (0, 3), SETTINGS, _quiet)
    assert record["reliable"] and record["control"]["ok"]
    slower = compare.pair(record, 1, 0)
    assert slower["ratio"] == pytest.approx(1.5, rel=0.02)
    assert slower["ratio_low"] <= slower["ratio"] <= slower["ratio_high"]
    spread = compare.resolution(record["control"])
    assert compare.verdict(slower, spread) == "slower"
    assert compare.verdict(compare.pair(record, 0, 1), spread) == "faster"
    # The same latency is a tie, not a coin toss.
    assert compare.verdict(compare.pair(record, 2, 0), spread) == "tie"
    # Every round timed every artifact once, in shuffled orders.
    assert turns.turns == 4 * SETTINGS.rounds
    orders = {tuple(r["order"]) for r in record["rounds"]}
    assert len(orders) > 1 and all(sorted(o) == [0, 1, 2, 3] for o in orders)
    # The copy is measured but is not a candidate of any pair.
    assert all(3 not in (p["artifact"], p["reference"]) for p in record["pairs"])


def test_the_same_seed_gives_the_same_record():
    first = compare.run_comparison(ScriptedTurns([1.0, 1.2, 1.0]), list("abc"), (0, 2),
                                   SETTINGS, _quiet)  # fmt: skip
    again = compare.run_comparison(ScriptedTurns([1.0, 1.2, 1.0]), list("abc"), (0, 2),
                                   SETTINGS, _quiet)  # fmt: skip
    first.pop("wall_s"), again.pop("wall_s")
    assert first == again


def test_contended_rounds_are_redone_and_counted():
    # Turns 1-6 (the first two rounds of three artifacts) share their CPU with other work.
    turns = ScriptedTurns([1.0, 2.0, 1.0], contended=lambda turn: 0.5 if turn <= 6 else 0.0)
    record = compare.run_comparison(turns, list("abc"), (0, 2), SETTINGS, _quiet)
    assert record["rounds_repeated_for_contention"] == 2
    assert record["rounds_kept"] == SETTINGS.rounds and record["rounds_kept_contended"] == 0
    assert all(r["other_cpus"] == 0.0 for r in record["rounds"])


class _Probe:
    """A round's load as RoundLoad reports it: busy cache neighbours in the first three rounds."""

    def __init__(self) -> None:
        self.rounds = 0

    def start(self) -> None:
        self.rounds += 1

    def stop(self) -> dict:
        return {"steal": 0.0, "neighbours": 0.9 if self.rounds <= 3 else 0.0}


def test_rounds_with_busy_cache_neighbours_are_redone():
    turns = ScriptedTurns([1.0, 2.0, 1.0])
    probe = _Probe()
    turns.round_load = lambda: probe  # type: ignore[attr-defined]
    record = compare.run_comparison(turns, list("abc"), (0, 2), SETTINGS, _quiet)
    assert record["rounds_repeated_for_contention"] == 3
    assert all(r["neighbours"] == 0.0 for r in record["rounds"])


def test_contention_that_never_ends_is_kept_after_a_bounded_number_of_retries():
    turns = ScriptedTurns([1.0, 2.0, 1.0], contended=lambda turn: 0.5)
    settings = compare.Settings(rounds=5, runs_per_turn=3, resamples=100, max_batches=1)
    record = compare.run_comparison(turns, list("abc"), (0, 2), settings, _quiet)
    # At most RETRIES_PER_ROUND x rounds retries per batch, then contended rounds are kept.
    assert record["rounds_repeated_for_contention"] == compare.RETRIES_PER_ROUND * 5
    assert record["rounds_kept_contended"] == 5 and record["rounds_kept"] == 5


def test_a_failing_aa_control_repeats_batches_then_decides_nothing():
    # The "copy" runs 10 % slower than its original: the measurement cannot be trusted.
    turns = ScriptedTurns([1.0, 2.0, 1.1])
    settings = compare.Settings(rounds=6, runs_per_turn=5, resamples=200, max_batches=3)
    record = compare.run_comparison(turns, list("abc"), (0, 2), settings, _quiet)
    assert not record["reliable"] and not record["control"]["ok"]
    assert record["batches"] == 3 and len(record["batch_reasons"]) == 3
    assert record["rounds_kept"] == 18
    assert "off 1 by more than 0.02" in record["unreliable_reason"]
    rows = compare.over_first(record | {"artifacts": []})
    assert [row["verdict"] for row in rows] == ["reference", "undecided"]


def test_record_shape_is_checked_by_name():
    record = record_of([{"path": "a"}, {"path": "b"}], [1.0, 2.0])
    assert compare.check_record(record, "x.json") is record
    del record["pairs"]
    with pytest.raises(ValueError, match="x.json: comparison record lacks pairs"):
        compare.check_record(record, "x.json")
    with pytest.raises(ValueError, match="not a mobileforge.compare/1 record"):
        compare.check_record({"schema": "other"}, "y.json")


# --- real processes: the command line on .ptl files built here -------------------------------


def _ptl(path: Path, layers: int) -> Path:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(layers)]).eval()
    torch.jit.script(model)._save_for_lite_interpreter(str(path))
    return path


@pytest.fixture(scope="module")
def ptls(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ptl")
    return _ptl(folder / "small.ptl", 1), _ptl(folder / "large.ptl", 12)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mobileforge.compare", *args]


def test_cli_prints_the_paired_table_and_writes_json_in_the_order_given(ptls, tmp_path):
    small, large = ptls
    out = tmp_path / "c.json"
    proc = subprocess.run(
        _cli(str(small), str(large), str(small), "--input-shape", "1,256", "--rounds", "5",
             "--json", str(out)),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "A/A control (#1 held twice)" in proc.stdout
    record = json.loads(out.read_text())
    rows = record["artifacts"]
    assert [row["path"] for row in rows] == [str(small), str(large), str(small)]
    assert rows[0]["ratio"] == 1.0 and rows[0]["verdict"] == "reference"
    # Twelve layers against one: slower by far more than any noise here.
    assert rows[1]["ratio_low"] > 2.0 and rows[1]["ratio"] > 2.0
    assert rows[2]["ratio_low"] <= rows[2]["ratio"] <= rows[2]["ratio_high"]
    assert record["rounds_kept"] >= 5 and record["threads"] == 1
    assert all(len(r["order"]) == 4 for r in record["rounds"])  # 3 artifacts and the A/A copy
    # Each artifact held in processes of its own (3 by default), none shared.
    pids = [pid for row in rows for pid in row["pids"]]
    assert all(len(set(row["pids"])) == 3 for row in rows) and len(set(pids)) == len(pids)


def test_cli_names_the_file_it_cannot_use(tmp_path):
    missing = tmp_path / "nope.pte"
    proc = subprocess.run(_cli(str(missing)), capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert proc.returncode == 1 and f"{missing}: no such file" in proc.stderr
    bare = tmp_path / "bare.ptl"
    bare.write_bytes(b"")
    proc = subprocess.run(_cli(str(bare)), capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert proc.returncode == 1 and "pass --input-shape" in proc.stderr


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def test_killing_the_comparison_leaves_no_process_holding_an_artifact(ptls):
    small, large = ptls
    proc = subprocess.Popen(
        _cli(str(small), str(large), "--input-shape", "1,256", "--rounds", "100000",
             "--processes", "3"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(_children(proc.pid)) < 9 and time.monotonic() < deadline:
            time.sleep(0.2)
        held = _children(proc.pid)
        assert len(held) == 9  # two artifacts and the A/A copy, each in 3 processes
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in held) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in held if _alive(pid)] == []


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs CPU affinity")
def test_every_held_process_runs_on_the_same_pinned_cpus(ptls, tmp_path):
    small, large = ptls
    out = tmp_path / "c.json"
    subprocess.run(
        _cli(str(small), str(large), "--input-shape", "1,256", "--rounds", "5", "--json",
             str(out)),
        capture_output=True, timeout=300, check=True,
    )  # fmt: skip
    record = json.loads(out.read_text())
    assert record["affinity"] == sorted(os.sched_getaffinity(0))[:1]


# --- a phone behind the real adb server -------------------------------------------------------


def test_a_phone_comparison_alternates_runner_processes_one_at_a_time(adb_server, phones, tmp_path):
    from mobileforge.bench.android.paired import PhoneArtifact
    from mobileforge.bench.runstate import RunState
    from mobileforge.compare import compare_on_phone
    from tests.runners import LIGHT_RUNNER, runs_log, write_runner

    phone = phones()
    runner = write_runner(tmp_path / "bin", "speed_benchmark_torch", LIGHT_RUNNER)
    fast, slow = tmp_path / "fast.ptl", tmp_path / "slow.ptl"
    for path, latency in ((fast, "1"), (slow, "3")):
        path.write_bytes(path.name.encode())  # the light runner only reads its name
        (phone.root / f"latency_ms.{path.name}").write_text(latency)
    device = {"kind": "adb", "serial": phone.serial, "threads": 1, "adb_host": "127.0.0.1",
              "adb_port": adb_server.port, "remote_dir": "/data/local/tmp/mobileforge"}  # fmt: skip
    operations = {"retries": 0, "timeouts": {"command_s": 20, "run_s": 60, "wait_for_device_s": 5}}
    settings = compare.Settings(rounds=5, runs_per_turn=4, turn_warmup=1, resamples=200)
    held = [PhoneArtifact(str(path), "ptl", [1, 3, 8, 8]) for path in (fast, slow)]
    state = RunState("phone", run_id="")
    record = compare_on_phone(
        held, device, {"ptl": str(runner)}, settings, operations, state, _quiet
    )
    rows = record["artifacts"]
    assert [row["path"] for row in rows] == [str(fast), str(slow)]
    # The runner sleeps 3 ms against 1 ms per iteration (host timer granularity aside).
    assert rows[1]["ratio_low"] > 1.5 and rows[1]["verdict"] == "slower"
    assert record["affinity"] is None and all(r["other_cpus"] is None for r in record["rounds"])
    # One runner process per turn: 5 rounds x (2 artifacts + the A/A copy), never two at once.
    processes = runs_log(phone.root)
    assert len(processes) == 5 * 3
    for earlier, later in zip(processes, processes[1:], strict=False):
        assert earlier["end"] <= later["start"]
    models = [next(a for a in p["argv"] if a.startswith("--model=")) for p in processes]
    assert sorted({m.rsplit("/", 1)[1] for m in models}) == ["fast.ptl", "slow.ptl"]
