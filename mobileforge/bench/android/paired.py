"""Phone artifacts timed one turn at a time, for a paired comparison on an adb device.

The phone side of :mod:`mobileforge.bench.compare`. A phone's runners (``speed_benchmark_torch``,
``executor_runner``) cannot hold a model loaded between requests, so a turn here is one runner
process: it loads the artifact, runs ``turn_warmup`` untimed and ``runs`` timed iterations, and
exits; the rounds alternate those processes on the phone, one at a time. Every turn goes through
:func:`mobileforge.bench.android.adb.run_adb_benchmark` (one repeat): the push cache, pinning,
quoting, retries after a cut connection and hang detection are the benchmark's own. How much
CPU other processes took on the phone is not measured (``other_cpus`` None): no round is redone
for it, and the A/A control is what shows the measurement's resolution there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mobileforge.bench.android.adb import run_adb_benchmark
from mobileforge.bench.runstate import RunState


@dataclass(frozen=True)
class PhoneArtifact:
    path: str
    fmt: str
    input_shape: list[int]


class PhoneTurns:
    """Turns of ``artifacts`` on the phone ``device`` (a resolved device config: ``serial``,
    ``threads``, ``adb_host``, ``adb_port``, ``remote_dir``), with ``runners`` per format."""

    def __init__(
        self,
        artifacts: list[PhoneArtifact],
        device: Mapping[str, Any],
        runners: Mapping[str, str],
        timeouts: Mapping[str, float],
        retries: int,
        state: RunState,
        job: str,
    ) -> None:
        missing = sorted({a.fmt for a in artifacts} - set(runners))
        if missing:
            raise ValueError(f"no runner for {', '.join(missing)} on {device['serial']}")
        self.artifacts = artifacts
        self.device = device
        self.runners = runners
        self.timeouts = timeouts
        self.retries = retries
        self.state = state
        self.job = job

    def turn(self, index: int, runs: int, turn_warmup: int) -> dict[str, Any]:
        artifact = self.artifacts[index]
        result = run_adb_benchmark(
            artifact.path,
            fmt=artifact.fmt,
            serial=self.device["serial"],
            runner=self.runners[artifact.fmt],
            input_shape=artifact.input_shape,
            threads=self.device["threads"],
            warmup=turn_warmup,
            iterations=runs,
            adb_host=self.device["adb_host"],
            adb_port=self.device["adb_port"],
            remote_dir=self.device["remote_dir"],
            repeats=1,
            timeouts=self.timeouts,
            retries=self.retries,
            state=self.state,
            job=f"{self.job}: turn of {artifact.path}",
        )
        return {"samples_ms": result["runs"][0]["samples_ms"], "other_cpus": None}
