"""The workflow end to end on a tiny config: outputs, incremental plans, reproducibility.

One real run (module fixture) is shared by the tests; each incremental test edits a copy of
the config and asks Snakemake for its dry-run plan, which must list exactly the jobs that
depend on the edit.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, TINY_CONFIG

pytestmark = pytest.mark.slow
# Jobs every edit replans after its own: the summary and the plots (named by their first output).
DOWNSTREAM = {"results/summary.csv", "results/report/latency_accuracy.png"}


def snakemake(workdir: Path, config: Path, *args: str, timeout: int = 1200) -> str:
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
               "--configfile", str(config), "--cores", "2", *args]  # fmt: skip
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout + result.stderr


def planned_outputs(workdir: Path, config: Path) -> set[str]:
    """The first output file of every job a dry run would run (the `all` target excluded)."""
    text = snakemake(workdir, config, "--dry-run")
    planned = set()
    for block in re.split(r"\n(?=\[\w{3} \w{3} |rule |localrule )", text):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        output = re.search(r"^\s+output: ([^,\n]+)", block, re.M)
        if rule and output and rule.group(1) != "all":
            planned.add(output.group(1))
    return planned


def write_config(workdir: Path, raw: dict, name: str) -> Path:
    path = workdir / name
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    config = workdir / "config.yaml"
    shutil.copy(TINY_CONFIG, config)
    snakemake(workdir, config)  # the default target: summary and plots
    return workdir, config, yaml.safe_load(config.read_text())


def test_summary_has_every_artifact_device_pair(run):
    workdir, _, _ = run
    frame = pd.read_csv(workdir / "results/summary.csv")
    for column in ["model", "variant", "format", "backend", "device", "engine", "params",
                   "size_bytes", "sparsity", "accuracy", "accuracy_delta", "max_abs_diff",
                   "latency_ms_p50", "latency_ms_p90", "latency_ms_mean", "latency_ms_std",
                   "load_ms", "threads", "speedup", "artifact", "best"]:  # fmt: skip
        assert column in frame.columns
    assert len(frame) == 2 * 6  # (3 ptl + 3 pte artifacts) x 2 devices
    assert frame["latency_ms_p50"].notna().all()
    assert frame["accuracy"].notna().all()
    fp32 = frame[frame["variant"] == "fp32"]
    assert (fp32["accuracy_delta"] == 0).all() and (fp32["speedup"] == 1).all()
    pruned = frame[frame["variant"] == "int8_pruned"]
    assert (pruned["sparsity"] >= 0.3).all()
    assert frame.groupby("device")["best"].sum().to_dict() == {"host": 1, "host2": 1}
    for path in frame["artifact"]:
        assert (workdir / path).is_file()


def test_rerun_with_nothing_changed_plans_nothing(run):
    workdir, config, _ = run
    assert planned_outputs(workdir, config) == set()


def test_editing_one_models_prune_amount_replans_only_its_pruned_chain(run):
    workdir, _, raw = run
    edited = copy.deepcopy(raw)
    edited["models"]["alpha"]["prune"] = {"amount": 0.5}
    planned = planned_outputs(workdir, write_config(workdir, edited, "prune.yaml"))
    m = "results/alpha"
    assert planned == {
        f"{m}/int8_pruned.x86.pt",
        f"{m}/ptl/int8_pruned.x86.cpu.ptl",
        f"{m}/pte/int8_pruned.xnnpack.pte",
        f"{m}/eval/ptl/int8_pruned.x86.cpu.json",
        f"{m}/eval/pte/int8_pruned.xnnpack.json",
        *(
            f"{m}/bench/{fmt}/{stem}.{device}.json"
            for fmt, stem in [("ptl", "int8_pruned.x86.cpu"), ("pte", "int8_pruned.xnnpack")]
            for device in ("host", "host2")
        ),  # fmt: skip
        *DOWNSTREAM,
    }


def test_editing_one_device_replans_only_its_benchmarks(run):
    workdir, _, raw = run
    edited = copy.deepcopy(raw)
    edited["devices"]["host2"]["iterations"] = 4
    planned = planned_outputs(workdir, write_config(workdir, edited, "device.yaml"))
    assert DOWNSTREAM <= planned
    benches = planned - DOWNSTREAM
    assert len(benches) == 6
    assert all(path.endswith(".host2.json") and "/bench/" in path for path in benches)


def test_adding_a_model_plans_only_its_chain_and_the_summary(run):
    workdir, _, raw = run
    edited = copy.deepcopy(raw)
    edited["models"]["gamma"] = {"arch": "tinycnn", "kwargs": {"width": 4}}
    planned = planned_outputs(workdir, write_config(workdir, edited, "added.yaml"))
    assert DOWNSTREAM <= planned
    assert all(path.startswith("results/gamma/") for path in planned - DOWNSTREAM)
    # jobs: train, fuse (+ reference logits), int8, prune, 6 artifacts, 6 evaluations,
    # 12 benchmarks
    assert len(planned - DOWNSTREAM) == 4 + 6 + 6 + 12


def test_two_clean_runs_give_byte_identical_artifacts(run, tmp_path):
    workdir, config, _ = run
    again = tmp_path / "again"
    again.mkdir()
    stems = [
        "checkpoint.pt", "fused.pt", "int8.x86.pt", "int8_pruned.x86.pt", "ptl/fp32.cpu.ptl",
        "ptl/int8.x86.cpu.ptl", "ptl/int8_pruned.x86.cpu.ptl", "pte/fp32.xnnpack.pte",
        "pte/int8.xnnpack.pte", "pte/int8_pruned.xnnpack.pte",
    ]  # fmt: skip
    targets = [f"results/alpha/{stem}" for stem in stems]
    snakemake(again, config, *targets)
    for target in targets:
        assert (again / target).read_bytes() == (workdir / target).read_bytes(), target


def test_timeouts_and_retries_rerun_nothing_but_cooldown_reruns_the_benchmarks(run):
    workdir, _, raw = run
    edited = copy.deepcopy(raw)
    edited["benchmark"]["retries"] = 5
    edited["benchmark"]["timeouts"] = {"command_s": 3, "run_s": 60, "wait_for_device_s": 1}
    assert planned_outputs(workdir, write_config(workdir, edited, "ops.yaml")) == set()
    edited["benchmark"]["cooldown"] = {"pause_s": 1}
    planned = planned_outputs(workdir, write_config(workdir, edited, "cool.yaml"))
    assert planned - DOWNSTREAM and all("/bench/" in p for p in planned - DOWNSTREAM)
    assert len(planned - DOWNSTREAM) == 12  # every benchmark of both devices


def test_benchmark_results_combine_repeats_with_thermal_snapshots(run):
    workdir, _, _ = run
    result = json.loads((workdir / "results/alpha/bench/pte/fp32.xnnpack.host.json").read_text())
    assert result["repeats"] == 2 and len(result["runs"]) == 2
    assert result["latency_ms"]["runs"] == 2 and result["latency_ms"]["cv"] is not None
    for run_ in result["runs"]:
        assert run_["latency_ms"]["count"] == 5 and run_["ended_unix"] > run_["started_unix"]
        assert {"zones", "cur_freq_khz"} <= run_["thermal_before"].keys()
    assert result["timing"]["process_s"] >= result["timing"]["job_s"] > 0
