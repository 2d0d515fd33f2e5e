"""Run directories: the README's commands read exactly the config they are meant to.

Snakemake merges ``--configfile`` into the ``config.yaml`` of the working directory, so the
README gives every run a directory of its own. These dry runs execute the README's own
commands (taken from its text, or from the ``docs/`` page a command moved to) and check which
models each would build. And every relative link of the README and ``docs/`` resolves.
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


@pytest.mark.slow
def test_a_shipped_config_runs_alone_as_the_readme_says(tmp_path):
    command = readme_command("--configfile configs/mobilenet_v2_224.yaml")
    assert planned_models(with_directory(command, tmp_path / "mnv2"), REPO) == {"mobilenet_v2_224"}


@pytest.mark.slow
def test_a_run_directory_reads_its_own_config(tmp_path):
    run = tmp_path / "mine"
    run.mkdir()
    shutil.copy(TINY_CONFIG, run / "config.yaml")
    command = readme_command("--cores 8 --directory runs/mine")
    assert planned_models(with_directory(command, run), REPO) == {"alpha"}


@pytest.mark.slow
def test_a_configfile_beside_a_config_yaml_is_merged_into_it(tmp_path):
    # Why the README gives runs their own directory: in a directory with a config.yaml (the
    # repository root), Snakemake merges --configfile into it instead of replacing it.
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    command = ["snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2",
               "--configfile", str(TINY_CONFIG)]  # fmt: skip
    models = planned_models(command, tmp_path)
    assert models == {"alpha", "tinycnn", "mobilenet_v2", "resnet18"}


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a markdown page's headings (outside fenced code)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for heading in re.findall(
        r"^#{1,6} +(.+?) *$", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M), re.M
    ):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def broken_links(page: Path) -> list[str]:
    """The relative links of a markdown page whose file, or heading anchor, does not exist."""
    text = page.read_text()
    prose = re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif (
            anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked.read_text())
        ):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    return broken


@pytest.mark.parametrize("page", DOCS, ids=lambda page: page.relative_to(REPO).as_posix())
def test_every_relative_link_of_the_docs_resolves(page):
    assert broken_links(page) == []


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## How `best` is decided\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#how-best-is-decided), [here](#page), [web](https://example.org)\n"
        "`[code](nowhere.md)`\n\n```sh\necho [not](a-link.md)\n```\n"
        "[gone](missing.md), [no heading](other.md#timing), [no anchor](#nope)\n"
    )
    assert broken_links(page) == [
        f"missing.md: no file {tmp_path / 'missing.md'}",
        "other.md#timing: no heading #timing in other.md",
        "#nope: no heading #nope in page.md",
    ]
