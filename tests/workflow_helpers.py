"""Helpers for tests that drive the workflow, shared by several test files."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import snakemake


def planned_outputs(workdir: Path, config: Path, **options) -> set[str]:
    """The first output file of every job a dry run would run (the `all` target excluded)."""
    text = snakemake(workdir, config, "--dry-run", **options)
    planned = set()
    for block in re.split(
        r"\n(?=\[\w{3} \w{3} |rule |localrule |checkpoint |localcheckpoint )", text
    ):
        rule = re.search(r"^(?:local)?(?:rule|checkpoint) (\w+):", block, re.M)
        output = re.search(r"^\s+output: ([^,\n]+)", block, re.M)
        if rule and output and rule.group(1) != "all":
            planned.add(output.group(1))
    return planned
