"""Where an artifact's time goes on one device: its per-layer profile, checked against its
benchmark there (mobileforge.profile)."""

from __future__ import annotations

from typing import Any

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
    runtimes but run nothing. On a phone a ``.pte`` runs in the phone's executor_runner with
    ETDump on, when that runner has ``--etdump_path`` (:mod:`mobileforge.profile.phone`).
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
    fmt = sidecar["format"]
    if device["kind"] != "host" and fmt in record.PHONE_UNAVAILABLE:
        profiled = record.unavailable(sidecar, artifact, name, device["kind"],
                                      record.PHONE_UNAVAILABLE[fmt])  # fmt: skip
    else:
        with device_lock(farm.device_key(device)):
            raw = _profile_on(job, device, artifact, sidecar, settings)
        if raw.get("unavailable"):
            profiled = record.unavailable(sidecar, artifact, name, device["kind"],
                                          raw["unavailable"])  # fmt: skip
        else:
            p50 = benchmark["latency_ms"]["p50"]
            macs = (_module_macs(job.input["float_model"], sidecar["input_shape"])
                    if "float_model" in job.input else None)  # fmt: skip
            profiled = record.from_raw(raw, sidecar, artifact, name, device["kind"],
                                       settings["warmup"], p50, macs)  # fmt: skip
            for row in profiled["layers"][:5]:
                job.log(f"{row['name']}: {row['median_ms']:.3f} ms ({row['share']:.0%}, "
                        f"{row['kind']})")  # fmt: skip
    job.log(profiled["agreement"])
    profiled["toolchain"] = job.params.get("toolchain")
    records.check(records.Profile, profiled, job.output["profile"])
    files.write_json_atomic(job.output["profile"], profiled)


def _profile_on(
    job: Job, device: dict[str, Any], artifact: str, sidecar: dict[str, Any], settings: dict
) -> dict[str, Any]:
    """The raw profile on the host (this process) or a phone (its runner, over adb)."""
    if device["kind"] == "host":
        from mobileforge.profile.runner import profile as profile_here

        return profile_here(artifact, sidecar["format"], list(sidecar["input_shape"]),
                            device["threads"], settings["runs"], settings["warmup"],
                            sidecar.get("engine"))  # fmt: skip
    from mobileforge.profile.phone import profile_on_phone

    return profile_on_phone(artifact, sidecar, device, job.params["operations"],
                            job.input["runner"], settings["runs"], settings["warmup"],
                            job=f"profile of {artifact} on {job.wildcards['device']}")  # fmt: skip


def _module_macs(path: str, input_shape: list[int]) -> dict[str, int]:
    """MACs per module of the float model at ``path`` (after the profile: it runs it once)."""
    from mobileforge import chain
    from mobileforge.macs import module_macs

    model, _ = chain.load_fused_model(path)
    return module_macs(model, input_shape)
