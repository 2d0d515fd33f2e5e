"""Profile a ``.pte`` on a phone: its executor_runner runs it with ETDump on
(:mod:`mobileforge.bench.android.etdump`), the ETDump is pulled and read with the Inspector as
a host profile's is (:func:`mobileforge.profile.pte.etdump_runs`), giving the same raw shape."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from mobileforge.bench.device import phone_session


def profile_on_phone(
    artifact: str,
    sidecar: dict[str, Any],
    device: dict[str, Any],
    operations: dict[str, Any],
    runner: str,
    runs: int,
    warmup: int,
    job: str = "",
) -> dict[str, Any]:
    """The raw profile (:func:`mobileforge.profile.runner.profile`'s shape) of ``artifact``
    on the phone ``device`` (a resolved ``devices`` entry; the caller holds its lock), or
    ``{"unavailable": why}`` when its runner cannot write an ETDump."""
    from mobileforge.bench.android.etdump import run_adb_etdump
    from mobileforge.profile.pte import etdump_runs

    with tempfile.TemporaryDirectory(prefix="mobileforge-phone-etdump-") as tmp:
        etdump = Path(tmp) / "phone.etdump"
        got = run_adb_etdump(
            artifact,
            runner=runner,
            input_shape=sidecar["input_shape"],
            threads=device["threads"],
            warmup=warmup,
            runs=runs,
            etdump=etdump,
            cooldown=device["cooldown"],
            job=job,
            **phone_session(device, operations),
        )
        if got["unavailable"]:
            return {"unavailable": got["unavailable"]}
        layers = etdump_runs(etdump, runs)
    return {
        "unavailable": None,
        "method": "etdump",
        "runs": layers,
        "end_to_end_ms": got["end_to_end_ms"],
        "unprofiled_ms": None,  # ETDump is on for the whole process
        "threads": got["threads_applied"],
        "affinity": got["affinity"],
        "torch_version": None,
        "executorch_version": None,  # the runner binary's version is not queryable
        "remote_command": got["remote_command"],
    }
