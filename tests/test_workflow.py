"""The workflow end to end on a tiny config: outputs, incremental plans, reproducibility.

One real run (the session's ``tiny_run``) is shared by the tests; each incremental test edits
a copy of the config and asks Snakemake for its dry-run plan, which must list exactly the jobs
that depend on the edit.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, insert_into, snakemake

pytestmark = pytest.mark.slow
# Jobs every edit replans after its own: the summary and the plots (named by their first output).
DOWNSTREAM = {"results/summary.csv", "results/report/latency_accuracy.png"}


def planned_outputs(workdir: Path, config: Path, **options) -> set[str]:
    """The first output file of every job a dry run would run (the `all` target excluded)."""
    text = snakemake(workdir, config, "--dry-run", **options)
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


@pytest.fixture
def run(tiny_run):
    return tiny_run


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


# -- code and toolchain changes ----------------------------------------------------------------
WORKFLOW_PARTS = ("Snakefile", "rules", "scripts", "mobileforge", "schemas", "envs", "report",
                  "profiles")  # fmt: skip
PTL_INT8_CHAIN = {
    "results/alpha/int8.x86.pt",
    "results/alpha/int8_pruned.x86.pt",
    *(f"results/alpha/ptl/{v}.x86.cpu.ptl" for v in ("int8", "int8_pruned")),
    *(f"results/alpha/eval/ptl/{v}.x86.cpu.json" for v in ("int8", "int8_pruned")),
    *(
        f"results/alpha/bench/ptl/{v}.x86.cpu.{device}.json"
        for v in ("int8", "int8_pruned")
        for device in ("host", "host2")
    ),
}


def test_an_edit_of_the_quantize_code_replans_quantize_and_downstream_only(run, tmp_path):
    workdir, config, _ = run
    checkout = tmp_path / "checkout"  # the workflow with one function of quantize/fx.py edited
    checkout.mkdir()
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, checkout / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, checkout / part)
    insert_into(checkout / "mobileforge" / "quantize" / "fx.py", "quantize_static", "assert True")
    planned = planned_outputs(workdir, config, snakefile=checkout / "Snakefile")
    # quantize, then everything made from its int8 model; not the data, checkpoint, fused model,
    # fp32 artifacts or the .pte programs (calibrated by pt2e from the fused model).
    assert planned == PTL_INT8_CHAIN | DOWNSTREAM


def test_an_executorch_upgrade_replans_only_the_pte_jobs(run, tmp_path):
    workdir, config, _ = run
    # A rebuilt executorch wheel: same release (the pin check passes), another build tag.
    fake = tmp_path / "site" / "executorch-1.5.1+rebuilt.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: executorch\nVersion: 1.5.1+rebuilt\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    planned = planned_outputs(workdir, config, env=env)
    pte = {
        *(f"results/alpha/pte/{v}.xnnpack.pte" for v in ("fp32", "int8", "int8_pruned")),
        *(f"results/alpha/eval/pte/{v}.xnnpack.json" for v in ("fp32", "int8", "int8_pruned")),
        *(
            f"results/alpha/bench/pte/{v}.xnnpack.{device}.json"
            for v in ("fp32", "int8", "int8_pruned")
            for device in ("host", "host2")
        ),
    }
    assert planned == pte | DOWNSTREAM


def test_sidecars_and_summary_record_the_toolchain(run):
    workdir, _, _ = run
    sidecar = yaml.safe_load((workdir / "results/alpha/pte/int8.xnnpack.pte.json").read_text())
    packages = sidecar["toolchain"]["packages"]
    assert packages["executorch"] == metadata.version("executorch")
    assert packages["torch"] == metadata.version("torch")
    frame = pd.read_csv(workdir / "results/summary.csv")
    pte = frame[frame["format"] == "pte"]
    assert pte["built_with"].str.contains(f"executorch=={metadata.version('executorch')}").all()
    assert not frame[frame["format"] == "ptl"]["built_with"].str.contains("executorch").any()


# -- interrupted runs -------------------------------------------------------------------------
ARTIFACTS = [
    f"results/alpha/{stem}"
    for stem in ("checkpoint.pt", "fused.pt", "int8.x86.pt", "int8_pruned.x86.pt",
                 "ptl/fp32.cpu.ptl", "ptl/int8.x86.cpu.ptl", "ptl/int8_pruned.x86.cpu.ptl",
                 "pte/fp32.xnnpack.pte", "pte/int8.xnnpack.pte", "pte/int8_pruned.xnnpack.pte")
]  # fmt: skip


def test_a_killed_run_resumes_to_the_bytes_of_an_uninterrupted_one(run, tmp_path):
    reference, config, _ = run
    workdir = tmp_path / "killed"
    workdir.mkdir()
    shutil.copy(config, workdir / "config.yaml")
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
               "--cores", "2", *ARTIFACTS]  # fmt: skip
    with open(tmp_path / "killed.log", "w") as log:
        # Its own session, so kill -9 reaches Snakemake and every job it started, like a crash.
        process = subprocess.Popen(
            command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 600
        while not (workdir / "results/alpha/fused.pt").exists():  # mid-run: exports are next
            assert process.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline, "the run never reached the fused model"
            time.sleep(0.2)
        time.sleep(1)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not all((workdir / target).exists() for target in ARTIFACTS), "killed too late"

    # A plain rerun stops: on jobs killed after writing their outputs (--rerun-incomplete) or,
    # once those are allowed to rerun, on the lock the killed run left (--unlock).
    again = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600)
    text = again.stdout + again.stderr
    assert again.returncode != 0 and ("--rerun-incomplete" in text or "--unlock" in text), text
    again = subprocess.run(
        [*command, "--rerun-incomplete"], cwd=workdir, capture_output=True, text=True, timeout=600
    )
    assert again.returncode != 0 and "Directory cannot be locked" in again.stderr, again.stderr
    # What the README says to do after a kill: unlock, then rerun the incomplete jobs.
    snakemake(workdir, workdir / "config.yaml", "--unlock")
    snakemake(workdir, workdir / "config.yaml", "--rerun-incomplete", *ARTIFACTS)
    for target in ARTIFACTS:
        assert (workdir / target).read_bytes() == (reference / target).read_bytes(), target
    leftovers = [path.name for path in (workdir / "results").rglob("*.tmp")]
    assert leftovers == [], "a killed job's temporary file was left behind"
