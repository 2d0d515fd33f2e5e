"""Where an artifact's time goes on one device: its per-layer profile, checked against its
benchmark there (mobileforge.profile)."""

from __future__ import annotations

from mobileforge import files, records
from mobileforge.job import Job, without_torch


@without_torch  # the profile runs in a pinned process of its own (mobileforge.profile.runner)
def profile(job: Job) -> None:
    """Profile the artifact on the device (``profile.runs`` after ``profile.warmup``), holding
    the device as a benchmark does; a device that cannot still gets a record saying why."""
    from mobileforge.bench import farm
    from mobileforge.bench.devicelock import device_lock
    from mobileforge.profile import record

    device = job.params["device"]
    settings = job.params["settings"]
    name = job.wildcards["device"]
    artifact = job.input["artifact"]
    sidecar = records.read(records.ArtifactSidecar, files.sidecar_path(artifact))
    benchmark = records.read(records.BenchmarkResult, job.input["benchmark"])
    if device["kind"] != "host":
        profiled = record.unavailable(
            sidecar, artifact, name, device["kind"],
            "profiling on phones is not built yet: only host devices are profiled",
        )  # fmt: skip
    else:
        from mobileforge.profile.host import profile_on_host

        with device_lock(farm.device_key(device)):
            raw = profile_on_host(
                artifact,
                sidecar["format"],
                sidecar["input_shape"],
                device["threads"],
                settings["runs"],
                settings["warmup"],
                sidecar.get("engine"),
            )
        profiled = record.from_raw(raw, sidecar, artifact, name, "host", settings["warmup"],
                                   benchmark["latency_ms"]["p50"])  # fmt: skip
        for row in profiled["layers"][:5]:
            job.log(f"{row['name']}: {row['median_ms']:.3f} ms ({row['share']:.0%}, {row['kind']})")
    job.log(profiled["agreement"])
    profiled["toolchain"] = job.params.get("toolchain")
    records.check(records.Profile, profiled, job.output["profile"])
    files.write_json_atomic(job.output["profile"], profiled)
