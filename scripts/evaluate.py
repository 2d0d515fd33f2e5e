"""Snakemake job script: see mobileforge.stages.evaluate."""

from mobileforge import stages
from mobileforge.job import run

run(snakemake, stages.evaluate)  # noqa: F821 - injected by Snakemake
