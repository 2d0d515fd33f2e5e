"""The workflow benchmarking on a farm of emulated phones behind the real adb server.

Artifacts of a tiny model are built once (module fixture); each test then runs the benchmarks
and the summary on its own copy against phones it connects: two phones in parallel with two
config entries on one of them, and a run where one phone is offline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mobileforge import plan
from mobileforge import records as shapes
from mobileforge.bench import farm, timeline
from mobileforge.config import resolve_config
from mobileforge.profile.record import PHONE_UNAVAILABLE
from tests.conftest import REPO
from tests.runners import LIGHT_RUNNER, runs_log, write_runner
from tests.workflow_helpers import planned_outputs

pytestmark = pytest.mark.slow

BASE = {
    "defaults": {
        "input_shape": [1, 3, 16, 16],
        "train": {"epochs": 1, "batch_size": 32, "seed": 0, "threads": 1},
        "quantize": {"calibration_batches": 2, "batch_size": 16},
    },
    "models": {"alpha": {"arch": "tinycnn", "kwargs": {"width": 8}}},
    "dataset": {"name": "shapes", "train_size": 128, "calib_size": 32, "eval_size": 32},
    "variants": ["fp32"],  # one .ptl and one .pte: both runners, few slow exports
    "formats": ["ptl", "pte"],
    "benchmark": {"warmup": 1, "iterations": 5, "repeats": 2, "timeouts": {"command_s": 10}},
    # The paired comparison per phone: 5 rounds of 3 runner processes (2 artifacts, A/A copy).
    "compare": {"rounds": 5, "runs_per_turn": 2, "turn_warmup": 0},
}
COMPARE_PROCESSES = 5 * 3


def smk(workdir: Path, config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
               "--configfile", str(config), "--cores", "2", *args]  # fmt: skip
    # Phones of a test come and go with random ports: their locks stay out of the host's folder.
    env = {**os.environ, farm.LOCK_DIR_ENV: str(workdir / "locks")}
    result = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=1200
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout}\n{result.stderr}")
    return result


def write_config(workdir: Path, port: int, devices: dict[str, dict]) -> Path:
    runner = str(workdir / "bin" / "runner")
    raw = {**BASE, "devices": {}}
    for name, device in devices.items():
        raw["devices"][name] = {"kind": "adb", "adb_port": port, "runner": runner,
                                "pte_runner": runner, **device}  # fmt: skip
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir with the tiny model's artifacts built (no benchmark run yet)."""
    workdir = tmp_path_factory.mktemp("farm")
    write_runner(workdir / "bin", "runner", LIGHT_RUNNER)
    config = write_config(workdir, 5037, {"phone": {"serial": "unused"}})
    targets = [
        a.path for a in plan.all_artifacts(resolve_config(yaml.safe_load(config.read_text())))
    ]
    smk(workdir, config, *targets)
    return workdir


def _copy(built: Path, tmp_path: Path) -> Path:
    workdir = tmp_path / "work"
    shutil.copytree(built, workdir, symlinks=True)
    return workdir


def test_two_phones_in_parallel_never_two_runs_on_one_phone(
    built: Path, tmp_path: Path, adb_server, phones
) -> None:
    workdir = _copy(built, tmp_path)
    a, b = phones(), phones()
    for phone in (a, b):
        (phone.root / "runner_sleep").write_text("0.3")
    config = write_config(
        workdir,
        adb_server.port,
        {
            "phoneA": {"serial": a.serial, "threads": 1},
            "phoneA2": {"serial": a.serial, "threads": 2},  # a thread sweep on the same phone
            "phoneB": {"serial": b.serial, "threads": 1},
        },
    )
    smk(workdir, config)

    results = sorted(workdir.glob("results/alpha/bench/*/*.json"))
    assert len(results) == 2 * 3  # (1 ptl + 1 pte) x 3 config entries
    records = timeline.intervals(results)
    # Ground truth from the phones themselves: runner processes never overlapped on one phone,
    # and phone A ran both config entries' benchmarks and comparisons.
    for phone, entries in ((a, 2), (b, 1)):  # benchmarks: entries x artifacts x repeats
        procs = runs_log(phone.root)
        assert len(procs) == entries * (2 * 2 + COMPARE_PROCESSES)
        assert all(p["end"] <= q["start"] for p, q in zip(procs, procs[1:], strict=False))
    assert set(timeline.overlaps(records).values()) == {0}
    most, _ = timeline.max_concurrency(records)
    assert most == 2  # both phones busy at once: no job waited for a host core or the other

    frame = pd.read_csv(workdir / "results/summary.csv")
    assert len(frame) == 6 and frame["latency_ms_p50"].notna().all()
    assert set(frame["repeats"]) == {2}
    for result in results:  # every benchmark has a profile record, saying why it has no layers
        profile = shapes.read(shapes.Profile, str(result).replace("/bench/", "/profile/"))
        assert profile["device_kind"] == "adb" and profile["layers"] == []
        if profile["format"] == "ptl":
            assert profile["unavailable"] == PHONE_UNAVAILABLE["ptl"]
        else:  # the light runner's --help lists no --etdump_path: asked on the phone
            assert "no --etdump_path" in profile["unavailable"]
    by_device = frame.groupby("device")
    assert by_device["threads"].unique().map(list).to_dict() == {
        "phoneA": [1], "phoneA2": [2], "phoneB": [1],
    }  # fmt: skip
    assert by_device["affinity"].unique().map(list).to_dict() == {
        "phoneA": ["7"], "phoneA2": ["6,7"], "phoneB": ["7"],
    }  # fmt: skip


def test_summary_is_built_with_one_phone_failed_and_rerun_fills_the_gap(
    built: Path, tmp_path: Path, adb_server, phones
) -> None:
    workdir = _copy(built, tmp_path)
    good, bad = phones(), phones()
    bad.unplug()
    adb_server.wait_state(bad.serial, "offline")
    config = write_config(
        workdir, adb_server.port, {"good": {"serial": good.serial}, "bad": {"serial": bad.serial}}
    )

    failed = smk(workdir, config, "--keep-going", check=False)

    assert failed.returncode != 0  # the failure is not hidden
    assert "built from what succeeded: 2 of 4 benchmarks, 2 failed" in failed.stderr
    frame = pd.read_csv(workdir / "results/summary.csv")
    assert len(frame) == 4
    rows = frame.set_index("device")
    assert rows.loc["good", "latency_ms_p50"].notna().all()
    assert rows.loc["bad", "latency_ms_p50"].isna().all()
    for note in rows.loc["bad", "note"]:
        assert note.startswith("benchmark failed: DeviceNotConnected")
        assert repr(bad.serial) in note and "'offline'" in note
    figures = [figure.path for figure in plan.figures(_resolved(config))]
    for path in [*figures, "results/summary.md", "results/report/summary.html"]:
        assert (workdir / path).stat().st_size > 0  # the same tables and plots a full run has

    bad.replug()
    adb_server.wait_state(bad.serial, "device")
    missing = planned_outputs(workdir, config)
    assert {p for p in missing if "/bench/" in p} == {
        p for p in (a.bench_path("bad") for a in plan.all_artifacts(_resolved(config)))
    }
    # ... and the profiles checked against its benchmarks (a record saying why there is none),
    # with the model's profile page that shows them (a job is named by its first output)
    assert {p for p in missing if "/profile/" in p} == {
        p for p in (a.profile_path("bad") for a in plan.all_artifacts(_resolved(config)))
    } | {plan.profile_page_paths("alpha")["markdown"]}
    # The salvaged summary and plots are dated back: the rerun rebuilds them (the plots job is
    # named by its first figure).
    assert {p for p in missing if "/bench/" not in p and "/profile/" not in p} == {
        "results/summary.csv",
        figures[0],
        "results/alpha/compare/bad.json",
    }  # the failed phone's comparison too, and only it
    smk(workdir, config)
    frame = pd.read_csv(workdir / "results/summary.csv")
    assert frame["latency_ms_p50"].notna().all() and not frame["note"].fillna("").any()


def _resolved(config: Path) -> dict:
    return resolve_config(yaml.safe_load(config.read_text()))
