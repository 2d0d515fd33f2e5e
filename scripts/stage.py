"""Snakemake job script of every rule: runs the rule's stage (mobileforge.stages.RULES)."""

import sys
from pathlib import Path

# The repository root, so the job also runs in a conda env that lacks an installed mobileforge.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from mobileforge import stages  # noqa: E402
from mobileforge.job import run  # noqa: E402

run(snakemake, stages.for_rule(snakemake.rule))  # noqa: F821
