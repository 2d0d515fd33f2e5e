"""Snakemake job script: see mobileforge.stages.export_pte."""

from mobileforge import stages
from mobileforge.job import run

run(snakemake, stages.export_pte)  # noqa: F821 - injected by Snakemake
