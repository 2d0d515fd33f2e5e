"""Snakemake job script: see mobileforge.stages.train."""

from mobileforge import stages
from mobileforge.job import run

run(snakemake, stages.train)  # noqa: F821 - injected by Snakemake
