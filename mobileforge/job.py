"""Adapter between a Snakemake ``script:`` job and a stage function of :mod:`mobileforge.stages`.

Scripts stay one line: ``run(snakemake, stages.fuse)``. This module sends stderr (progress,
warnings, tracebacks) to the rule's log, sets torch's thread count to the job's runtime threads
(its ``threads`` claim divided by the workflow's cores per CPU: :mod:`mobileforge.cpus`), and
turns a failure into one clear line on the terminal plus the full traceback in the log.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mobileforge import cpus


@dataclass
class Job:
    """What a stage needs from Snakemake, as plain values."""

    input: dict[str, Any]
    output: dict[str, Any]
    params: dict[str, Any]
    wildcards: dict[str, str]
    threads: int = 1  # runtime threads (torch, ExecuTorch) this job may use
    rule: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def log(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)


def without_torch(stage: Callable[[Job], None]) -> Callable[[Job], None]:
    """Mark a stage that never imports torch in its own process (it is not imported for it)."""
    stage.without_torch = True  # type: ignore[attr-defined]
    return stage


def _named(namedlist: Any) -> dict[str, Any]:
    return {name: value for name, value in namedlist.items()}


def from_snakemake(smk: Any) -> Job:
    return Job(
        input=_named(smk.input),
        output=_named(smk.output),
        params=_named(smk.params),
        wildcards=_named(smk.wildcards),
        threads=cpus.runtime_threads(int(smk.threads), cpus.share_from_env()),
        rule=smk.rule,
    )


def run(smk: Any, stage: Callable[[Job], None]) -> None:
    """Run ``stage`` for the Snakemake job ``smk``; on error exit 1 with a one-line reason."""
    terminal = os.fdopen(os.dup(2), "w")
    if smk.log:
        log = open(smk.log[0], "w", buffering=1)  # noqa: SIM115 - lives for the whole process
        os.dup2(log.fileno(), 2)
        sys.stderr = log
    job = from_snakemake(smk)
    if not getattr(stage, "without_torch", False):
        import torch

        torch.set_num_threads(max(1, job.threads))
    try:
        stage(job)
    except Exception as error:
        traceback.print_exc()
        where = ", ".join(f"{key}={value}" for key, value in job.wildcards.items())
        print(f"mobileforge: {job.rule}[{where}] failed: {error}", file=terminal, flush=True)
        sys.exit(1)
