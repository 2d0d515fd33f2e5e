"""The one script of the warm worker tests' Snakefile: the stage is named by the rule's params."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821 - the repository

from mobileforge.job import run  # noqa: E402
from tests.warm import stages  # noqa: E402

run(snakemake, getattr(stages, snakemake.params.stage))  # noqa: F821
