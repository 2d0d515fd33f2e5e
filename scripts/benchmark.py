"""Snakemake job script: see mobileforge.stages.benchmark."""

from mobileforge import stages
from mobileforge.job import run

run(snakemake, stages.benchmark)  # noqa: F821 - injected by Snakemake
