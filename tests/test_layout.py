"""Run directories: the README's commands read exactly the config they are meant to.

Snakemake merges ``--configfile`` into the ``config.yaml`` of the working directory, so the
README gives every run a directory of its own. These dry runs execute the README's own
commands (taken from its text, or from the ``docs/`` page a command moved to) and check which
models each would build.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_CONFIG

pytestmark = pytest.mark.slow

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def readme_command(*needles: str) -> list[str]:
    """The shell command of the README or a ``docs/`` page containing every needle, as arguments."""
    text = "\n".join(page.read_text() for page in DOCS)
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    lines = [line for block in blocks for line in block.splitlines()]
    matches = [line for line in lines if all(needle in line for needle in needles)]
    assert len(matches) == 1, f"expected one README command with {needles}, found {matches}"
    return shlex.split(matches[0].split("#", 1)[0])


def planned_models(command: list[str], cwd: Path) -> set[str]:
    """Run ``command`` (a README snakemake command) as a dry run; the models it would build."""
    assert command[0].endswith("snakemake")
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", *command[1:], "--dry-run"],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return set(re.findall(r"wildcards: model=([\w-]+)", done.stdout))


def with_directory(command: list[str], directory: Path) -> list[str]:
    """The command with its ``--directory`` pointing at a temporary run directory instead."""
    position = command.index("--directory")
    return [*command[: position + 1], str(directory), *command[position + 2 :]]


def test_a_shipped_config_runs_alone_as_the_readme_says(tmp_path):
    command = readme_command("--configfile configs/mobilenet_v2_224.yaml")
    assert planned_models(with_directory(command, tmp_path / "mnv2"), REPO) == {"mobilenet_v2_224"}


def test_a_run_directory_reads_its_own_config(tmp_path):
    run = tmp_path / "mine"
    run.mkdir()
    shutil.copy(TINY_CONFIG, run / "config.yaml")
    command = readme_command("--cores 8 --directory runs/mine")
    assert planned_models(with_directory(command, run), REPO) == {"alpha"}


def test_a_configfile_beside_a_config_yaml_is_merged_into_it(tmp_path):
    # Why the README gives runs their own directory: in a directory with a config.yaml (the
    # repository root), Snakemake merges --configfile into it instead of replacing it.
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    command = ["snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2",
               "--configfile", str(TINY_CONFIG)]  # fmt: skip
    models = planned_models(command, tmp_path)
    assert models == {"alpha", "tinycnn", "mobilenet_v2", "resnet18"}
