"""A job's side of the warm worker: find it (or start it), hand the job over, wait for its status.

:func:`dispatch` either returns the job's exit status, run by a fresh fork of the worker, or raises
:class:`Unavailable` saying why no worker could serve; the caller then runs the job in its own
process exactly as before. Nothing here imports torch.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mobileforge
from mobileforge.warm import protocol

#: "0" turns warm workers off: every job runs in its own process.
ENV = "MOBILEFORGE_WARM"
#: Set by the workflow: "1" in the Snakemake process that runs jobs on this machine, "0" where
#: jobs run elsewhere (a cluster executor; its job processes on the nodes), absent outside one.
LOCAL_ENV = "MOBILEFORGE_WARM_LOCAL"
#: Markers of a job running inside a batch system's allocation, which ends with the job.
BATCH_JOB_ENV = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID", "FLUX_JOB_ID")
#: What every worker imports.
BASE_MODULES = ("torch",)
#: What the ExecuTorch jobs' worker imports besides (about 10 CPU-s on the slower CPUs).
EXECUTORCH_MODULES = (
    "executorch.exir",
    "executorch.backends.xnnpack.partition.xnnpack_partitioner",
    "executorch.backends.xnnpack.quantizer.xnnpack_quantizer",
    "torchao.quantization.pt2e.quantize_pt2e",
)
#: Seconds a job waits for a new worker to bind its socket (imports come after).
START_TIMEOUT_S = 60.0


class Unavailable(Exception):
    """No warm worker can run this job; the message says why."""


def declare_run(local: bool) -> None:
    """In the workflow's Snakemake process: whether its jobs run on this machine (so warm workers
    may serve them) and, if so, that this process is the run its workers outlive idle spells of."""
    os.environ[LOCAL_ENV] = "1" if local else "0"
    if local:
        os.environ[protocol.RUN_ENV] = str(os.getpid())
    else:
        os.environ.pop(protocol.RUN_ENV, None)


def not_served_because(environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """Why jobs in this environment run in their own process, or None if a worker may serve."""
    if environ.get(ENV, "1") == "0":
        return f"{ENV}=0"
    if environ.get(LOCAL_ENV) != "1":
        return "not a local job of a mobileforge workflow run"
    if marker := next((name for name in BATCH_JOB_ENV if name in environ), None):
        return f"inside a batch job ({marker} is set)"
    return None


def modules_for(stage: Any, job: Any) -> tuple[str, ...]:
    """What the worker for ``stage`` preloads: torch, plus the stage's declared preloads."""
    extra = getattr(stage, "preloads", None)
    return BASE_MODULES + tuple(extra(job) if callable(extra) else ())


def _stdio() -> list[int]:
    # The job's own stdin/stdout/stderr travel to the child; a closed one becomes /dev/null.
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            fd = os.open(os.devnull, os.O_RDWR)
        fds.append(fd)
    return fds


def dispatch(
    stage: Any, job_record: dict[str, Any], modules: Sequence[str], log: str | None
) -> int:
    """Run the job in a fork of the run's warm worker; its exit status, or :class:`Unavailable`."""
    if reason := not_served_because():
        raise Unavailable(reason)
    request = {
        "schema": protocol.REQUEST_SCHEMA,
        "stage": f"{stage.__module__}:{stage.__qualname__}",
        "job": job_record,
        "log": log,
        "cwd": os.getcwd(),
        "environ": dict(os.environ),
        "sys_path": list(sys.path),
        "argv": list(sys.argv),
        "umask": _umask(),
    }
    name = protocol.worker_name(modules, sys.executable, sys.path, os.environ, socket.gethostname())
    try:
        directory = protocol.prepare_directory(Path.cwd())
        connection = _connect_or_start(directory, name, modules)
    except (OSError, Unavailable) as error:
        raise Unavailable(f"no warm worker: {error}") from error
    with connection:
        try:
            protocol.send_record(connection, request, _stdio())
            received = protocol.receive_record(
                connection, protocol.REPLY_SCHEMA, protocol.REPLY_KEYS
            )
        except ConnectionResetError:  # it closed with this job still queued
            received = None
        except (OSError, protocol.ProtocolError) as error:
            raise Unavailable(f"the warm worker failed: {error}") from error
    if received is None:
        log_path = directory / f"{name}.log"
        raise Unavailable(f"the warm worker ended before the job's status (see {log_path})")
    reply = received[0]
    if not reply["served"]:
        raise Unavailable(f"the warm worker refused: {reply['reason']}")
    return int(reply["exit_status"])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _connect_or_start(directory: Path, name: str, modules: Sequence[str]) -> socket.socket:
    path = directory / f"{name}.sock"
    try:
        return protocol.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        pass
    # One job starts the worker; jobs arriving meanwhile wait on the lock, then connect.
    with open(directory / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return protocol.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            # No socket, or one nobody listens on (its worker was killed): start a new one.
            path.unlink(missing_ok=True)
        _start_worker(path, modules, directory / f"{name}.log")
        return protocol.connect(path)


def _start_worker(path: Path, modules: Sequence[str], log_path: Path) -> None:
    # The worker imports mobileforge.warm from the checkout this job runs (scripts put it on
    # sys.path, which a new interpreter would not have); each child gets the job's sys.path.
    package_root = str(Path(mobileforge.__file__).resolve().parent.parent)
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, environ.get("PYTHONPATH")]))
    environ.update(dict.fromkeys(protocol.PER_JOB_THREAD_ENV, "1"))  # see there
    read_end, write_end = os.pipe()
    with open(log_path, "a") as log:
        worker = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "mobileforge.warm.worker", str(path), str(write_end), *modules],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(write_end,),
            start_new_session=True,  # Snakemake killing this job must not kill the worker
            cwd=path.parent,
            env=environ,
        )
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], START_TIMEOUT_S)
        said = os.read(read_end, 64) if ready else b""
    finally:
        os.close(read_end)
    if said != b"bound\n":
        worker.kill()
        raise Unavailable(f"the warm worker did not start (see {log_path})")


def shutdown(run_directory: Path | str = ".") -> int:
    """Ask this machine's workers of the run directory to exit (the run ended); how many heard.

    Running children finish first; nothing is started. For the workflow's onsuccess/onerror.
    """
    directory = Path(run_directory) / protocol.DIRECTORY
    host = socket.gethostname()
    told = 0
    for path in sorted(directory.glob(f"{host}-*.sock")) if directory.is_dir() else []:
        try:
            with protocol.connect(path, timeout_s=5) as connection:
                protocol.send_record(connection, {"schema": protocol.SHUTDOWN_SCHEMA})
            told += 1
        except OSError:
            continue  # gone already, or a stale socket the next run replaces
    return told
