"""Snakemake job script: see mobileforge.stages.reference."""

from mobileforge import stages
from mobileforge.job import run

run(snakemake, stages.reference)  # noqa: F821 - injected by Snakemake
