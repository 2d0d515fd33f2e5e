"""Snakemake job script: see mobileforge.stages.export_ptl."""

from mobileforge import stages
from mobileforge.job import run

run(snakemake, stages.export_ptl)  # noqa: F821 - injected by Snakemake
