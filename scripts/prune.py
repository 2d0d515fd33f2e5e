"""Snakemake job script: see mobileforge.stages.prune."""

from mobileforge import stages
from mobileforge.job import run

run(snakemake, stages.prune)  # noqa: F821 - injected by Snakemake
