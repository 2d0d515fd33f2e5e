"""Adapter between a Snakemake ``script:`` job and a stage function of :mod:`mobileforge.stages`.

Scripts stay one line: ``run(snakemake, stages.fuse)``. The job is handed to the run's warm worker
(:mod:`mobileforge.warm`), whose fresh fork runs it; where no worker can serve, it runs in this
process as it always did. Either way :func:`execute` runs the stage: it sends stderr (progress,
warnings, tracebacks) to the rule's log, sets torch's thread count to the job's runtime threads
(its ``threads`` claim divided by the workflow's cores per CPU: :mod:`mobileforge.cpus`), turns a
failure into one clear line on the terminal plus the full traceback in the log, and records the
job's own CPU time and peak memory (:mod:`mobileforge.job_usage`).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import select
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mobileforge import cpus, files, job_usage
from mobileforge.warm import client, protocol


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
    # When the job's own process (the one Snakemake started) began, in CLOCK_BOOTTIME seconds;
    # None where /proc does not say. A warm worker's fork is not that process: its age is not
    # the job's.
    started_at: float | None = None

    def log(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def age_s(self) -> float | None:
        """Seconds since the job's process started: interpreter start-up, Snakemake's script
        preamble and imports included, which no timer inside the stage sees."""
        return None if self.started_at is None else protocol.boottime() - self.started_at

    def as_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def without_torch(stage: Callable[[Job], None]) -> Callable[[Job], None]:
    """Mark a stage that never imports torch in its own process (it is not imported for it)."""
    stage.without_torch = True  # type: ignore[attr-defined]
    return stage


def preloads(
    modules: Sequence[str], when: Callable[[Job], bool] | None = None
) -> Callable[[Callable[[Job], None]], Callable[[Job], None]]:
    """Mark a stage whose warm worker also imports ``modules`` (for the jobs ``when`` accepts).

    Only third-party modules with no state of ours: a worker serves many jobs, one fork each.
    """

    def mark(stage: Callable[[Job], None]) -> Callable[[Job], None]:
        def chosen(job: Job) -> tuple[str, ...]:
            return tuple(modules) if when is None or when(job) else ()

        stage.preloads = chosen  # type: ignore[attr-defined]
        return stage

    return mark


def _plain(value: Any) -> Any:
    # Snakemake's inputs are str subclasses (and its namedlists list subclasses): plain builtins
    # let a job cross to a warm worker without importing Snakemake there, and both ways of
    # running a job see the same values.
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _named(namedlist: Any) -> dict[str, Any]:
    return {name: _plain(value) for name, value in namedlist.items()}


def from_snakemake(smk: Any) -> Job:
    started_at = protocol.process_started_at()  # first: the job's age starts with its process
    return Job(
        input=_named(smk.input),
        output=_named(smk.output),
        params=_named(smk.params),
        wildcards=_named(smk.wildcards),
        threads=cpus.runtime_threads(int(smk.threads), cpus.share_from_env()),
        rule=smk.rule,
        started_at=started_at,
    )


def run(smk: Any, stage: Callable[[Job], None]) -> None:
    """Run ``stage`` for the Snakemake job ``smk``; on error exit 1 with a one-line reason."""
    job = from_snakemake(smk)
    log = str(smk.log[0]) if smk.log else None
    try:
        status = client.dispatch(stage, job.as_record(), client.modules_for(stage, job), log)
    except client.Unavailable as why:
        status = execute(stage, job, log, mode="cold", note=str(why))
    if status:
        sys.exit(status)


def execute(
    stage: Callable[[Job], None],
    job: Job,
    log: str | None,
    mode: str,
    note: str = "",
) -> int:
    """Run ``stage`` in this process with its log, threads and usage record; its exit status."""
    terminal = os.fdopen(os.dup(2), "w")
    if log:
        handle = open(log, "w", buffering=1)  # noqa: SIM115 - lives for the whole process
        os.dup2(handle.fileno(), 2)
        sys.stderr = handle
    if note:
        print(f"mobileforge: this job runs in its own process: {note}", file=sys.stderr)
    if not getattr(stage, "without_torch", False):
        import torch

        torch.set_num_threads(max(1, job.threads))
    stage_started = protocol.boottime()
    status = 0
    try:
        stage(job)
    except Exception as error:
        traceback.print_exc()
        where = ", ".join(f"{key}={value}" for key, value in job.wildcards.items())
        print(f"mobileforge: {job.rule}[{where}] failed: {error}", file=terminal, flush=True)
        status = 1
    job_usage.report(job, log, mode, stage_started)
    return status


def serve_forked(request: dict[str, Any], connection: int) -> int:
    """In a warm worker's fresh child: become the job's process, run the stage; its status.

    ``connection`` is the job process's socket: while the stage runs, an atomic write that finds
    it closed (Snakemake killed the job) refuses to put its file in place.
    """
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["environ"])
    sys.path[:] = request["sys_path"]
    sys.argv[:] = request["argv"]
    files.set_commit_guard(lambda: _job_process_alive(connection))
    module, _, name = request["stage"].partition(":")
    stage = getattr(importlib.import_module(module), name)
    job = Job(**request["job"])
    return execute(stage, job, request["log"], mode="warm")


def _job_process_alive(connection: int) -> bool:
    # The job's process sends nothing after its request: anything readable is its end closing.
    poller = select.poll()
    poller.register(connection, select.POLLIN | select.POLLHUP | select.POLLRDHUP)
    return not poller.poll(0)
