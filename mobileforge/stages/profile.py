"""Where an artifact's time goes on one device: its per-layer profile, checked against its
benchmark there (mobileforge.profile)."""

from __future__ import annotations

from mobileforge import files, records
from mobileforge.job import Job, preloads
from mobileforge.warm.client import EXECUTORCH_MODULES


# The Inspector that reads an ETDump imports the compiler (executorch.exir): a warm worker's.
@preloads(EXECUTORCH_MODULES, when=lambda job: job.wildcards["fmt"] == "pte")
def profile(job: Job) -> None:
    """Profile the artifact on the device (``profile.runs`` after ``profile.warmup``), holding
    the device as a benchmark does; a device that cannot still gets a record saying why.

    On the host the profile runs in this job's own process, pinned and threaded as the
    benchmark's processes are (:func:`mobileforge.profile.runner.profile`): the job holds every
    core Snakemake manages, as a benchmark does, and a warm worker's fork has imported the
    runtimes but run nothing.
    """
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
            sidecar, artifact, name, device["kind"], record.PHONE_UNAVAILABLE[sidecar["format"]]
        )
    else:
        from mobileforge.profile.runner import profile as profile_here

        with device_lock(farm.device_key(device)):
            raw = profile_here(
                artifact,
                sidecar["format"],
                list(sidecar["input_shape"]),
                device["threads"],
                settings["runs"],
                settings["warmup"],
                sidecar.get("engine"),
            )
        profiled = record.from_raw(raw, sidecar, artifact, name, "host", settings["warmup"],
                                   benchmark["latency_ms"]["p50"],
                                   _module_macs(job.input["float_model"],
                                                sidecar["input_shape"]))  # fmt: skip
        for row in profiled["layers"][:5]:
            job.log(f"{row['name']}: {row['median_ms']:.3f} ms ({row['share']:.0%}, {row['kind']})")
    job.log(profiled["agreement"])
    profiled["toolchain"] = job.params.get("toolchain")
    records.check(records.Profile, profiled, job.output["profile"])
    files.write_json_atomic(job.output["profile"], profiled)


def _module_macs(path: str, input_shape: list[int]) -> dict[str, int]:
    """MACs per module of the float model at ``path`` (after the profile: it runs it once)."""
    from mobileforge import chain
    from mobileforge.macs import module_macs

    model, _ = chain.load_fused_model(path)
    return module_macs(model, input_shape)
