"""Measurements on a device: one artifact's benchmark, the paired comparison of a model's
candidates, and the host's peak throughput."""

from __future__ import annotations

from mobileforge import files, records
from mobileforge.job import Job, preloads, without_torch
from mobileforge.stages.common import listed, versions
from mobileforge.warm.client import EXECUTORCH_MODULES


@without_torch
def benchmark(job: Job) -> None:
    """Time the artifact on one device, ``repeats`` processes; one benchmark per device at once.

    A failure is also written down (:mod:`mobileforge.salvage`), so a run that ends in errors
    can still build the summary from what succeeded, with the error in the failed row's note.
    """
    startup_s = job.age_s()  # interpreter, Snakemake's script preamble, imports
    from mobileforge import salvage
    from mobileforge.bench import farm
    from mobileforge.bench.device import benchmark_on_device
    from mobileforge.bench.devicelock import device_lock

    device = job.params["device"]
    name = job.wildcards["device"]
    artifact = job.input["artifact"]
    sidecar = records.read(records.ArtifactSidecar, files.sidecar_path(artifact))
    try:
        with device_lock(farm.device_key(device)):
            result = benchmark_on_device(
                artifact,
                sidecar,
                device,
                operations=job.params.get("operations"),
                runner=job.input.get("runner"),
                job=f"benchmark of {artifact} on {name}",
            )
    except Exception as error:
        salvage.record_failure(job.output["benchmark"], artifact, name, error)
        raise
    salvage.clear_failure(job.output["benchmark"])
    latency = result["latency_ms"]
    cv = latency.get("cv")
    job.log(
        f"{artifact} on {name}: p50 {latency['p50']:.3f} ms (median of {latency['runs']} runs, "
        f"run-to-run CV {'n/a' if cv is None else f'{cv:.1%}'}), p90 {latency['p90']:.3f} ms, "
        f"threads {result.get('threads_applied') or result.get('threads_requested')}"
    )
    result["timing"].update(startup_s=startup_s, process_s=job.age_s())
    record = {
        **result,
        "artifact": artifact,
        "device": name,
        "device_kind": device["kind"],
        "toolchain": job.params.get("toolchain"),
    }
    records.check(records.BenchmarkResult, record, job.output["benchmark"])
    files.write_json_atomic(job.output["benchmark"], record)


@without_torch  # imports the runtimes itself, before forking the processes that hold artifacts
def compare(job: Job) -> None:
    """Time the model's candidates on one device side by side (mobileforge.bench.compare): on
    the host, each held loaded in a process of its own; on a phone, one runner per turn.

    The candidates are :func:`mobileforge.bench.compare.candidates`; the record names each one's
    role, variant, accuracy and size, so the summary decides ``best`` from it alone.
    """
    from mobileforge.bench import compare as paired
    from mobileforge.bench import farm
    from mobileforge.bench.devicelock import device_lock
    from mobileforge.compare import compare_on_host, host_artifact

    budget = job.params["accuracy_budget"]
    settings = dict(job.params["settings"])
    device = settings.pop("device")
    accuracy = {}
    for path in listed(job, "evaluations"):
        record = records.read(records.Evaluation, path)
        accuracy[record["artifact"]] = record["accuracy"]
    sidecars = {
        path: records.read(records.ArtifactSidecar, files.sidecar_path(path))
        for path in listed(job, "artifacts")
    }
    entries, left_out = paired.candidates(sidecars, accuracy, budget)
    for path, why in left_out.items():
        job.log(f"not a candidate: {path} ({why})")
    name = job.wildcards["device"]
    paths = [entry["path"] for entry in entries]
    with device_lock(farm.device_key(device)):
        if device["kind"] == "host":
            held = [host_artifact(path) for path in paths]
            record = compare_on_host(held, device["threads"], paired.Settings(**settings), job.log)
        else:
            from mobileforge.bench.android.paired import PhoneArtifact
            from mobileforge.bench.runstate import RunState
            from mobileforge.compare import compare_on_phone

            phone = [PhoneArtifact(p, sidecars[p]["format"], sidecars[p]["input_shape"])
                     for p in paths]  # fmt: skip
            record = compare_on_phone(
                phone, device, job.params["runners"], paired.Settings(**settings),
                job.params["operations"], RunState(farm.device_key(device)), job.log,
            )  # fmt: skip
    for entry, row in zip(entries, record["artifacts"], strict=True):
        row.update(entry)
    record.update(model=job.wildcards["model"], device=name, accuracy_budget=budget)
    files.write_json_atomic(job.output["comparison"], record)


@preloads(EXECUTORCH_MODULES)
def peak_programs(job: Job) -> None:
    """The ExecuTorch GEMM programs (fp32, int8 XNNPACK) the peak measurement times."""
    from mobileforge.bench.peak import gemm_programs

    shape = job.params["shape"]
    for precision, data in gemm_programs(shape).items():
        record = files.write_artifact(
            job.output[precision],
            data,
            job.output[f"{precision}_sidecar"],
            {"gemm_shape": shape, "precision": precision, "backend": "xnnpack", **versions(job)},
        )
        job.log(f"wrote {record['artifact']}: {record['size_bytes']} B")


@without_torch
def peak(job: Job) -> None:
    """Peak dense throughput of this host, per precision, at the device's benchmark threads."""
    from mobileforge.bench.devicelock import device_lock
    from mobileforge.bench.peak import measure_peak

    settings = job.params["measurement"]
    name = job.wildcards["device"]
    programs = {p: job.input[p] for p in ("fp32", "int8") if p in job.input}
    with device_lock(name):  # nothing else times on these CPUs meanwhile
        record = measure_peak(
            settings["threads"],
            settings["engine"],
            programs,
            settings["shape"],
            settings["repeats"],
        )
    for kernel in record["kernels"]:
        job.log(
            f"{kernel['kernel']}: {kernel['gmacs']:.1f} GMAC/s "
            f"(median run {kernel['gmacs_median']:.1f})"
        )
    for precision, best in sorted(record["peak"].items()):
        job.log(f"peak {precision}: {best['gmacs']:.1f} GMAC/s via {best['kernel']}")
    record = {**record, "device": name}
    records.check(records.PeakThroughput, record, job.output["peak"])
    files.write_json_atomic(job.output["peak"], record)
