"""The workflow on a real SLURM cluster (one node on loopback), through profiles/slurm.

The test starts munged, slurmctld and slurmd itself (:mod:`tests.slurm_cluster`), runs the tiny
config with the shipped profile and Snakemake's SLURM executor plugin, and checks that every
artifact has the bytes of the local run, that host benchmarks name the node they ran on, and
that a failing job is reported by rule, log and SLURM job id while ``--keep-going`` finishes
the rest. Without the SLURM packages (``.ci/run`` installs them) the test is skipped, unless
``MOBILEFORGE_REQUIRE_SLURM=1`` (CI) turns that into a failure.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.artifacts import artifact_digests
from tests.conftest import REPO, TIMINGS
from tests.slurm_cluster import SlurmCluster, missing_binaries

pytestmark = pytest.mark.slow

# Loopback-cluster specifics passed on the command line, not in the profile (a real cluster has
# sacct): poll squeue, whose finished jobs live MinJobAge (600 s) >= 3x the first check (2 s).
CLUSTER_ARGS = ["--slurm-status-command", "squeue",
                "--slurm-init-seconds-before-status-checks", "2"]  # fmt: skip


def _missing() -> list[str]:
    missing = missing_binaries()
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        missing.append("snakemake-executor-plugin-slurm (pip install -e '.[slurm]')")
    return missing


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = _missing()
    if missing:
        message = f"SLURM test needs {', '.join(missing)} (.ci/run installs them)"
        if os.environ.get("MOBILEFORGE_REQUIRE_SLURM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        TIMINGS["SLURM cluster start (munged, slurmctld, slurmd)"] = cluster.start()
        yield cluster
    finally:
        cluster.stop()


def run_on_slurm(cluster: SlurmCluster, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    profile = REPO / "profiles" / "slurm"
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
               "--workflow-profile", str(profile), *CLUSTER_ARGS, *args]  # fmt: skip
    return subprocess.run(
        command, cwd=workdir, env=cluster.env, capture_output=True, text=True, timeout=1200
    )


@pytest.fixture(scope="module")
def slurm_run(cluster, tiny_run, tmp_path_factory):
    """The tiny config run on SLURM with the shipped profile, in its own run directory."""
    workdir = tmp_path_factory.mktemp("slurm-run")
    raw = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())
    # One host device: a second one would only repeat its benchmarks on the same node.
    del raw["devices"]["host2"]
    (workdir / "config.yaml").write_text(yaml.safe_dump(raw))
    started = time.perf_counter()
    done = run_on_slurm(cluster, workdir)
    TIMINGS["SLURM run of tiny.yaml without host2 (--workflow-profile profiles/slurm)"] = (
        time.perf_counter() - started
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{cluster.tail('slurmctld')}"
    return workdir, done.stdout + done.stderr


def test_every_artifact_matches_the_local_run(slurm_run, tiny_run):
    workdir, log = slurm_run
    assert "has been submitted with SLURM jobid" in log  # it really went through SLURM
    on_slurm, local = artifact_digests(workdir), artifact_digests(tiny_run[0])
    assert len(on_slurm) >= 20  # data, checkpoint, stage files, 6 artifacts, evaluations
    assert on_slurm == local


def test_host_benchmarks_name_their_node_and_ask_slurm_for_their_threads(slurm_run, cluster):
    workdir, log = slurm_run
    assert "No wall time information given" not in log  # the profile's default runtime
    summary = pd.read_csv(workdir / "results" / "summary.csv")
    # fp32, int8 and the two prune points, in both formats, on the one host device
    assert len(summary) == 8 and summary["latency_ms_p50"].notna().all()
    assert set(summary["node"]) == {cluster.node}
    assert summary["cpu_model"].notna().all()
    for path in (workdir / "results" / "alpha" / "bench").rglob("*.json"):
        allocation = yaml.safe_load(path.read_text())["host"]["allocation"]
        # A SLURM job holding the device's one thread, not every core of the submit host.
        assert allocation["scheduler"] == "slurm" and allocation["cpus"] == 1
        assert allocation["exclusive"] is False


def test_failed_job_is_named_and_keep_going_finishes_the_rest(slurm_run, cluster):
    workdir, _ = slurm_run
    raw = yaml.safe_load((workdir / "config.yaml").read_text())
    (workdir / "corrupt.pt").write_bytes(os.urandom(4096))
    raw["models"]["beta"] = {"arch": "tinycnn", "kwargs": {"width": 8}, "checkpoint": "corrupt.pt"}
    raw["devices"]["host2"] = {"kind": "host", "threads": 1, "iterations": 3}
    (workdir / "config.yaml").write_text(yaml.safe_dump(raw))
    survivor = "results/alpha/bench/ptl/fp32.cpu.host2.json"
    # The benchmark also asks for its node exclusively, as profiles/slurm shows.
    exclusive = "benchmark_host:slurm_extra='--exclusive'"  # (--set-resources takes a list)
    done = run_on_slurm(
        cluster, workdir, "results/beta/checkpoint.pt", survivor, "--keep-going",
        "--set-resources", exclusive,
    )  # fmt: skip
    text = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Error in rule train:" in text
    assert "logs/train/beta.log" in text and "external_jobid:" in text
    assert "corrupt" in text  # show-failed-logs printed the job's own log
    assert (workdir / survivor).is_file(), text  # --keep-going: the independent job finished
    allocation = yaml.safe_load((workdir / survivor).read_text())["host"]["allocation"]
    assert allocation["exclusive"] is True and allocation["cpus"] == cluster.cpus
    shutil.rmtree(workdir / "results" / "beta", ignore_errors=True)
