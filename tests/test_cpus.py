"""--cores above the machine's CPUs must not oversubscribe it (mobileforge.cpus)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from mobileforge import cpus
from mobileforge.job import from_snakemake
from tests.conftest import REPO, TINY_CONFIG


@pytest.mark.parametrize(
    ("cores", "n_cpus", "share"),
    [(8, 2, 4), (2, 2, 1), (1, 2, 1), (8, 3, 2), (3, 2, 1), (8, 64, 1)],
)
def test_cores_per_cpu(cores: int, n_cpus: int, share: int) -> None:
    assert cpus.cores_per_cpu(cores, n_cpus) == share


def test_cores_per_cpu_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        cpus.cores_per_cpu(0, 2)


def test_runtime_threads_undo_the_claim() -> None:
    assert cpus.runtime_threads(4, 4) == 1  # a single-threaded job on --cores 8, 2 CPUs
    assert cpus.runtime_threads(8, 4) == 2  # train.threads: 2 there
    assert cpus.runtime_threads(2, 4) == 1  # scaled down by Snakemake: still one thread
    assert cpus.runtime_threads(3, 1) == 3


def test_job_threads_come_from_the_claim_and_the_share(monkeypatch) -> None:
    smk = SimpleNamespace(input={}, output={}, params={}, wildcards={}, threads=8, rule="train")
    monkeypatch.setenv(cpus.ENV, "4")
    assert from_snakemake(smk).threads == 2
    monkeypatch.delenv(cpus.ENV)
    assert from_snakemake(smk).threads == 8  # started by another executor: claim 1:1
    monkeypatch.setenv(cpus.ENV, "zero")
    with pytest.raises(ValueError, match=cpus.ENV):
        from_snakemake(smk)


def test_dry_run_claims_a_cpu_per_job(tmp_path: Path) -> None:
    shutil.copy(TINY_CONFIG, tmp_path / "config.yaml")
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
               "--configfile", "config.yaml", "--cores", "8", "--dry-run"]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = done.stdout + done.stderr
    share = cpus.cores_per_cpu(8, cpus.available_cpus())
    claims = {}  # rule -> threads shown by the dry run (Snakemake omits "threads: 1")
    for block in re.split(
        r"\n(?=\[\w{3} \w{3} |rule |localrule |checkpoint |localcheckpoint )", text
    ):
        rule = re.search(r"^(?:local)?(?:rule|checkpoint) (\w+):", block, re.M)
        if rule and rule.group(1) != "all":
            threads = re.search(r"^\s+threads: (\d+)", block, re.M)
            claims.setdefault(rule.group(1), set()).add(int(threads.group(1)) if threads else 1)
    assert claims["fuse"] == claims["evaluate"] == claims["export_pte"] == {share}
    assert claims["benchmark_host"] == {8}  # a host benchmark takes every core
    if share > 1:
        assert f"each job claims {share} cores per runtime thread" in text
