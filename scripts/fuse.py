"""Snakemake job script: see mobileforge.stages.fuse."""

from mobileforge import stages
from mobileforge.job import run

run(snakemake, stages.fuse)  # noqa: F821 - injected by Snakemake
