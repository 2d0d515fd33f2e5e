"""One artifact's benchmark on one configured device: the host (fresh processes here) or a phone
over adb. Torch-free: the benchmark job imports no runtime in its own process."""

from __future__ import annotations

from typing import Any

from mobileforge.bench import farm


def benchmark_on_device(
    artifact: str,
    sidecar: dict[str, Any],
    device: dict[str, Any],
    operations: dict[str, Any] | None = None,
    runner: str | None = None,
    job: str = "",
) -> dict[str, Any]:
    """Time ``artifact`` (its ``sidecar`` gives format, input shape and engine) on ``device``
    (a resolved ``devices`` entry), ``device["repeats"]`` runs of ``warmup`` + ``iterations``.

    A phone also needs the adb ``operations`` settings (timeouts, retries), the device-side
    ``runner`` binary and the ``job``'s description for its messages. The caller holds the
    device's lock (:mod:`mobileforge.bench.devicelock`).
    """
    common = {
        "fmt": sidecar["format"],
        "input_shape": sidecar["input_shape"],
        "threads": device["threads"],
        "warmup": device["warmup"],
        "iterations": device["iterations"],
        "repeats": device["repeats"],
        "cooldown": device["cooldown"],
    }
    if device["kind"] == "host":
        from mobileforge.bench.host.repeats import run_host_repeats

        return run_host_repeats(artifact, engine=sidecar.get("engine"), **common)
    from mobileforge.bench.android.adb import run_adb_benchmark

    if operations is None or runner is None:
        raise ValueError(f"{job}: a phone benchmark needs the adb operations and a runner")
    return run_adb_benchmark(
        artifact, runner=runner, job=job, **phone_session(device, operations), **common
    )


def phone_session(device: dict[str, Any], operations: dict[str, Any]) -> dict[str, Any]:
    """How a job reaches the phone ``device`` (a resolved ``devices`` entry) over adb: its
    serial and adb server, its folder, the ``operations``' timeouts and retries, and the run's
    memory of it; the keyword arguments the adb runs take."""
    from mobileforge.bench.runstate import RunState

    return {
        "serial": device["serial"],
        "adb_host": device["adb_host"],
        "adb_port": device["adb_port"],
        "remote_dir": device["remote_dir"],
        "timeouts": operations["timeouts"],
        "retries": operations["retries"],
        "state": RunState(farm.device_key(device)),
    }
