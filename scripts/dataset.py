"""Snakemake job script: see mobileforge.stages.dataset."""

from mobileforge import stages
from mobileforge.job import run

run(snakemake, stages.dataset)  # noqa: F821 - injected by Snakemake
