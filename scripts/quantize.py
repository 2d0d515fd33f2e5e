"""Snakemake job script: see mobileforge.stages.quantize."""

from mobileforge import stages
from mobileforge.job import run

run(snakemake, stages.quantize)  # noqa: F821 - injected by Snakemake
