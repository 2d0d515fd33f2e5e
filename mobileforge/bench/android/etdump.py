"""Run a ``.pte`` on a phone with ETDump on and pull the ETDump back.

ExecuTorch's ``executor_runner`` built with the event tracer (``-DEXECUTORCH_BUILD_DEVTOOLS=ON
-DEXECUTORCH_ENABLE_EVENT_TRACER=ON``) defines ``--etdump_path`` and writes the ETDump there
after its executions; built without it, the flag does not exist (gflags would refuse it).
Whether a runner has it is read from the runner itself: its ``--help`` (gflags lists every flag
it defines) run on the phone, never assumed from the config.

The session is the benchmark's (:mod:`mobileforge.bench.android.adb`): the phone's probe, the
push cache, pinning, the cool-down, retries after a cut cable and hang detection. The ETDump is
written beside the run folder (``run-<id>.etdump``), so a cut run's leftover is swept with the
run folders by the next job.
"""

from __future__ import annotations

import posixpath
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mobileforge.bench import tail
from mobileforge.bench.android import adb, pushcache
from mobileforge.bench.android.adbconn import AdbBenchmarkError, RemoteFileMissing
from mobileforge.bench.runstate import RunState

#: How an event-tracer build of executor_runner is made (ExecuTorch's CMake options).
EVENT_TRACER_BUILD = "-DEXECUTORCH_BUILD_DEVTOOLS=ON -DEXECUTORCH_ENABLE_EVENT_TRACER=ON"
#: gflags' --help lists a flag as ``-name (description) type: ...``.
_FLAG_RE = "(?:^|\\s)--?{}\\b"
_ETDUMP_FLAG = re.compile(_FLAG_RE.format("etdump_path"), re.MULTILINE)
_MODEL_FLAG = re.compile(_FLAG_RE.format("model_path"), re.MULTILINE)


class _NoEtdump(Exception):
    """The runner has no --etdump_path: stop before running anything."""


def etdump_support(help_output: str, returncode: int) -> str | None:
    """None when ``executor_runner --help`` lists ``--etdump_path``; else why there is none.

    gflags' ``--help`` exits 1 after printing, so the exit code only matters when the output
    lists no flag at all (not a gflags executor_runner, or one that crashed).
    """
    if _ETDUMP_FLAG.search(help_output):
        return None
    if _MODEL_FLAG.search(help_output):
        return (
            "this executor_runner has no --etdump_path (its --help does not list it): it was "
            f"built without the event tracer; rebuild it with {EVENT_TRACER_BUILD} to profile "
            ".pte artifacts on this phone"
        )
    return (
        f"this executor_runner's --help (exit {returncode}) lists no flags, so whether it has "
        f"--etdump_path is unknown; output tail: {tail(help_output, 300)!r}"
    )


def run_adb_etdump(
    artifact: str | Path,
    serial: str,
    runner: str | Path,
    input_shape: list[int],
    threads: int,
    warmup: int,
    runs: int,
    etdump: Path,
    adb_host: str = "127.0.0.1",
    adb_port: int = 5037,
    remote_dir: str = adb.DEFAULT_REMOTE_DIR,
    cooldown: Mapping[str, Any] | None = None,
    timeouts: Mapping[str, float] | None = None,
    retries: int = 0,
    state: RunState | None = None,
    job: str = "",
) -> dict[str, Any]:
    """Run ``artifact`` once on phone ``serial`` with ETDump on: ``1 + warmup + runs``
    executions, the ETDump pulled to ``etdump``.

    Returns ``unavailable`` (why there is no ETDump: the runner lacks the flag; else None),
    and when there is one ``end_to_end_ms`` (the runner's own times of the last ``runs``
    executions, the ones the profile reads from the ETDump), ``threads_applied``, ``affinity``,
    ``device_info``, ``remote_command``, ``runner_sha256`` and ``warnings``. Errors are the
    benchmark's (:class:`~mobileforge.bench.android.adbconn.AdbBenchmarkError` and kin).
    """
    base = pushcache.validate_remote_dir(remote_dir)
    remote = posixpath.join(base, f"run-{secrets.token_hex(6)}.etdump")
    work, plan, outcome = adb._setup(
        artifact, "pte", serial, runner, input_shape, threads, warmup, runs, adb_host,
        adb_port, base, cooldown, timeouts, state, job or f"profile of {artifact} on {serial}",
        retries, extra_args=(f"--etdump_path={remote}",),
    )  # fmt: skip
    why: list[str] = []

    def prepared() -> None:
        if not why:  # once per job: the runner is the same after a retry
            result = work.shell(f"{adb._q(plan.remote[0], '--help')} 2>&1")
            why.append(etdump_support(result.stdout, result.returncode) or "")
        if why[0]:
            raise _NoEtdump

    def ran(run: dict[str, Any]) -> None:
        try:
            work.phone.pull(remote, etdump, work.timeouts["command_s"])
        except RemoteFileMissing as error:
            raise AdbBenchmarkError(
                f"executor_runner on {serial} lists --etdump_path and exited 0 but wrote no "
                f"ETDump at {remote}"
            ) from error
        work.shell(f"rm -f {adb._q(remote)}")

    try:
        adb._run_repeats(work, plan, outcome, 1, retries, prepared=prepared, ran=ran)
    except _NoEtdump:
        return {"unavailable": why[0]}
    run = outcome.runs[0]
    return {
        "unavailable": None,
        "end_to_end_ms": run["samples_ms"],
        "threads_applied": run["threads_applied"],
        "affinity": plan.cpus,
        "device_info": plan.device_info,
        "remote_command": plan.invocation,
        "runner_sha256": plan.files[0][3],
        "retries_used": outcome.retries_used,
        "warnings": outcome.warnings,
    }
