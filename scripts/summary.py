"""Snakemake job script: see mobileforge.stages.summary."""

from mobileforge import stages
from mobileforge.job import run

run(snakemake, stages.summary)  # noqa: F821 - injected by Snakemake
