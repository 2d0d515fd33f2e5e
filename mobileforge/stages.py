"""One function per workflow rule: read the job's inputs, call the library, write its outputs.

Each stage writes one artifact atomically plus a JSON sidecar (sha256, size, the settings used,
torch version, which path produced it). Settings arrive as Snakemake ``params`` so that editing
one model's or one device's config reruns exactly the jobs that depend on it.
"""

from __future__ import annotations

import io
import platform
from typing import Any

from mobileforge import files
from mobileforge.job import Job, without_torch

# torch (about 1.3 s to import) is imported inside the stages that use it: the benchmark and
# summary jobs, which run many times and need none of it in their own process, skip that cost.


def _versions(job: Job) -> dict[str, Any]:
    """What the output was made with: torch and Python, and the job's ``toolchain`` param (the
    fingerprint of the code it ran and its packages' versions, mobileforge.fingerprint)."""
    import torch

    return {
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "toolchain": job.params.get("toolchain"),
    }


def dataset(job: Job) -> None:
    """Generate (shapes) or import (folder, tensors) the train/calib/eval splits."""
    from mobileforge import data

    spec = job.params["spec"]
    channels, height, width = job.params["chw"]
    job.log(f"building dataset {spec['name']!r} at {channels}x{height}x{width}")
    built = data.build_dataset(spec, height, width, channels)
    data.save_dataset(built, job.output["data"])
    sizes = {split: len(built[f"{split}_x"]) for split in ("train", "calib", "eval")}
    job.log(f"splits: {sizes}, classes: {len(built['classes'])}")
    files.write_sidecar(
        job.output["data"],
        job.output["sidecar"],
        {"spec": spec, "splits": sizes, "classes": built["classes"], **_versions(job)},
    )


def train(job: Job) -> None:
    """Train the fp32 model deterministically, or import the user's state_dict instead."""
    import torch

    from mobileforge import train as training
    from mobileforge.data import load_dataset
    from mobileforge.models import build_model
    from mobileforge.stagefile import save_stage

    p = job.params["settings"]
    data = load_dataset(job.input["data"])
    num_classes = p["num_classes"] or len(data["classes"])
    learns = bool(p["checkpoint"]) or p["train"]["epochs"] > 0
    # Untrained weights (speed/size studies, e.g. 1000 classes) only need valid label indices.
    if num_classes < len(data["classes"]) or (learns and num_classes != len(data["classes"])):
        raise ValueError(
            f"models.{p['model']}.num_classes is {num_classes} but the dataset has "
            f"{len(data['classes'])} classes"
        )
    kwargs = p["kwargs"] or {}
    torch.manual_seed(p["train"]["seed"])  # initial weights follow the seed too
    model = build_model(p["arch"], num_classes, kwargs)
    meta: dict[str, Any] = {
        "stage": "checkpoint",
        "model": p["model"],
        "arch": p["arch"],
        "kwargs": kwargs,
        "num_classes": num_classes,
        "input_shape": p["input_shape"],
        "params": sum(t.numel() for t in model.parameters()),
    }
    info: dict[str, Any] = {}
    if p["checkpoint"]:
        state_dict = training.load_user_checkpoint(p["checkpoint"])
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as error:
            raise ValueError(
                f"{p['checkpoint']}: does not fit arch {p['arch']!r} with kwargs {kwargs}: "
                f"{str(error).splitlines()[0]}"
            ) from error
        meta["source"] = f"imported from {p['checkpoint']}"
        job.log(f"imported {p['checkpoint']} (training skipped)")
    elif p["train"]["epochs"] == 0:
        meta["source"] = f"initial weights of seed {p['train']['seed']} (train.epochs is 0)"
        job.log("train.epochs is 0: keeping the seeded initial weights; accuracy means nothing")
    else:
        settings = p["train"]
        history = training.train_model(
            model,
            data,
            epochs=settings["epochs"],
            batch_size=settings["batch_size"],
            lr=settings["lr"],
            seed=settings["seed"],
            momentum=settings["momentum"],
            weight_decay=settings["weight_decay"],
            log=job.log,
        )
        meta["source"] = "trained"
        # Top level too: whether training stopped while still improving (and by how much).
        info["still_improving"] = history["trend"]["still_improving"]
        info["train"] = {"settings": settings, "history": history}
    model.eval()
    if "train" in info:  # the last epoch already measured the final weights on the eval split
        accuracy = info["train"]["history"]["final_eval_acc"]
    else:
        accuracy = training.evaluate_accuracy(model, data["eval_x"], data["eval_y"])
    job.log(f"fp32 eval top-1: {accuracy:.2f}%")
    info["eval_accuracy"] = accuracy
    save_stage(
        job.output["checkpoint"],
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        meta,
        job.output["sidecar"],
        {**info, **_versions(job)},
    )


def fuse(job: Job) -> None:
    """Fuse conv-bn(-relu)/linear-relu, check the outputs did not move, keep the fp32 reference.

    The unfused model's logits on the eval split are both the yardstick of the fusion check and
    the reference every artifact is compared with, so they are written here (``reference``).
    """
    import torch

    from mobileforge import chain
    from mobileforge.data import load_dataset
    from mobileforge.fuse import fuse as fuse_model
    from mobileforge.macs import count_macs
    from mobileforge.runtime.evaluate import collect_logits
    from mobileforge.stagefile import save_stage, torch_bytes

    model, meta = chain.load_checkpoint_model(job.input["checkpoint"])
    data = load_dataset(job.input["data"])
    fused = fuse_model(model)
    with torch.no_grad():
        reference = collect_logits(model, data["eval_x"], batch_size=256)
        diff = (collect_logits(fused, data["eval_x"], batch_size=256) - reference).abs().max()
    diff = float(diff)
    atol = job.params["fuse"]["atol"]
    job.log(f"fused vs unfused max |diff| on {len(data['eval_x'])} eval images: {diff:.3g}")
    if diff > atol:
        raise ValueError(f"fusion changed outputs by {diff:.3g} > fuse.atol {atol}")
    files.write_bytes_atomic(job.output["reference"], torch_bytes(reference))
    # MACs of one inference travel with the model to every artifact made from it (int8 ones too:
    # quantized modules cannot be counted).
    macs = count_macs(fused, meta["input_shape"])
    save_stage(
        job.output["fused"],
        fused.state_dict(),
        {**meta, "stage": "fused", "macs": macs},
        job.output["sidecar"],
        {"fusion_max_abs_diff": diff, "fusion_atol": atol, **_versions(job)},
    )


def quantize(job: Job) -> None:
    """Post-training static int8 for one engine, calibrated on the calibration split."""
    from mobileforge import chain
    from mobileforge.data import load_dataset
    from mobileforge.quantize.fx import quantize_static
    from mobileforge.stagefile import save_stage

    fused, meta = chain.load_fused_model(job.input["fused"])
    data = load_dataset(job.input["data"])
    settings = job.params["quantize"]
    engine = job.wildcards["engine"]
    model, seen = quantize_static(
        fused,
        engine,
        settings["per_channel"],
        data["calib_x"],
        settings["calibration_batches"],
        settings["batch_size"],
        log=job.log,
        reduce_range=settings["reduce_range"],
    )
    save_stage(
        job.output["model"],
        model.state_dict(),
        {**meta, "stage": "int8", "engine": engine, "per_channel": settings["per_channel"]},
        job.output["sidecar"],
        {"calibration_images": seen, "quantize": settings, **_versions(job)},
    )


def prune(job: Job) -> None:
    """Magnitude-prune the int8 weights; the achieved sparsity goes in the sidecar."""
    from mobileforge import chain
    from mobileforge.prune.unstructured import prune_quantized
    from mobileforge.quantize.fx import quantized_engine
    from mobileforge.stagefile import save_stage

    model, meta = chain.load_quantized_model(job.input["model"])
    settings = job.params["prune"]
    with quantized_engine(meta["engine"]):
        stats = prune_quantized(model, settings["amount"], settings["method"])
        state_dict = model.state_dict()
    job.log(f"pruned {stats['pruned_weights']} weights: sparsity {stats['sparsity']:.4f}")
    save_stage(
        job.output["model"],
        state_dict,
        {**meta, "stage": "int8_pruned", "prune": settings, "sparsity": stats["sparsity"]},
        job.output["sidecar"],
        {"layer_sparsity": stats["layers"], **_versions(job)},
    )


def _artifact_info(
    job: Job, meta: dict[str, Any], fmt: str, variant: str, backend: str
) -> dict[str, Any]:
    return {
        "model": meta["model"],
        "format": fmt,
        "variant": variant,
        "backend": backend,
        "engine": meta.get("engine") if fmt == "ptl" else None,
        "arch": meta["arch"],
        "params": meta["params"],
        "macs": meta.get("macs"),
        "input_shape": meta["input_shape"],
        "sparsity": meta.get("sparsity"),
        **_versions(job),
    }


def export_ptl(job: Job) -> None:
    """Frozen (or plain scripted, when smaller and as fast) lite-interpreter module."""
    import torch

    from mobileforge import chain
    from mobileforge.export.ptl import export_ptl as export
    from mobileforge.quantize.fx import quantized_engine

    model, meta = chain.load_stage_model(job.input["model"])
    backend = job.wildcards["backend"]
    variant = "fp32" if meta["stage"] == "fused" else meta["stage"]
    engine = meta.get("engine", torch.backends.quantized.engine)
    with quantized_engine(engine):
        data, info = export(model, backend, chain.example_input(meta), log=job.log)
    record = files.write_artifact(
        job.output["artifact"],
        data,
        job.output["sidecar"],
        {**_artifact_info(job, meta, "ptl", variant, backend), **info},
    )
    job.log(f"wrote {record['artifact']}: {record['size_bytes']} B via {info['optimization']}")


def export_pte(job: Job) -> None:
    """ExecuTorch program lowered to one backend (fp32, or pt2e int8 calibrated like the .ptl)."""
    from mobileforge import chain
    from mobileforge.data import load_dataset
    from mobileforge.export import pte

    pte.check_executorch()
    fused, meta = chain.load_fused_model(job.input["fused"])
    variant = job.wildcards["variant"]
    backend = job.wildcards["backend"]
    # params carry quantize/prune settings only for the variants that use them (rerun triggers).
    quantize = job.params["quantize"] or {}
    calibration = None
    if quantize:
        count = quantize["calibration_batches"] * quantize["batch_size"]
        calibration = load_dataset(job.input["data"])["calib_x"][:count]
    data, info = pte.export_pte(
        fused,
        chain.example_input(meta),
        backend,
        variant,
        calibration,
        job.params["prune"],
        per_channel=quantize.get("per_channel", True),
        calibration_batch_size=quantize.get("batch_size", 32),
    )
    record = files.write_artifact(
        job.output["artifact"],
        data,
        job.output["sidecar"],
        {
            **_artifact_info(job, meta, "pte", variant, backend),
            **info,
            "sparsity": info.get("sparsity"),
            "optimization": f"to_edge_transform_and_lower({backend})",
        },
    )
    job.log(f"wrote {record['artifact']}: {record['size_bytes']} B")


def evaluate(job: Job) -> None:
    """Accuracy and max |diff| vs the fp32 reference of the artifact, run by its own runtime."""
    import torch

    from mobileforge.data import load_dataset
    from mobileforge.quantize.fx import quantized_engine

    data = load_dataset(job.input["data"])
    reference_logits = torch.load(job.input["reference"], weights_only=True)
    sidecar = files.read_json(files.sidecar_path(job.input["artifact"]))
    if sidecar["format"] == "ptl":
        from mobileforge.runtime.evaluate import evaluate_ptl

        with quantized_engine(sidecar["engine"] or torch.backends.quantized.engine):
            result = evaluate_ptl(
                job.input["artifact"], data["eval_x"], data["eval_y"], reference_logits
            )
    else:
        from mobileforge.runtime import pte as pte_runtime

        pte_runtime.set_pte_threads(job.threads)  # as torch's: the job's share of the cores
        result = pte_runtime.evaluate_pte(
            job.input["artifact"], data["eval_x"], data["eval_y"], reference_logits
        )
    job.log(
        f"{job.input['artifact']}: top-1 {result['accuracy']:.2f}%, "
        f"max |diff| {result['max_abs_diff']}"
    )
    files.write_json_atomic(
        job.output["evaluation"], {"artifact": job.input["artifact"], **result, **_versions(job)}
    )


@without_torch
def benchmark(job: Job) -> None:
    """Time the artifact on one device; never two benchmarks on one device at once."""
    from mobileforge.bench.devicelock import device_lock

    device = job.params["device"]
    name = job.wildcards["device"]
    artifact = job.input["artifact"]
    sidecar = files.read_json(files.sidecar_path(artifact))
    common = {
        "fmt": sidecar["format"],
        "input_shape": sidecar["input_shape"],
        "threads": device["threads"],
        "warmup": device["warmup"],
        "iterations": device["iterations"],
    }
    with device_lock(name):
        if device["kind"] == "host":
            from mobileforge.bench.host import run_host_benchmark

            result = run_host_benchmark(artifact, engine=sidecar.get("engine"), **common)
        else:
            from mobileforge.bench.adb import run_adb_benchmark

            result = run_adb_benchmark(
                artifact,
                serial=device["serial"],
                runner=device["runner"] if sidecar["format"] == "ptl" else device["pte_runner"],
                adb_host=device["adb_host"],
                adb_port=device["adb_port"],
                **common,
            )
    latency = result["latency_ms"]
    job.log(
        f"{artifact} on {name}: p50 {latency['p50']:.3f} ms, p90 {latency['p90']:.3f} ms, "
        f"threads {result.get('threads_applied')}"
    )
    files.write_json_atomic(
        job.output["benchmark"],
        {
            **result,
            "artifact": artifact,
            "device": name,
            "device_kind": device["kind"],
            "toolchain": job.params.get("toolchain"),
        },
    )


@without_torch
def summary(job: Job) -> None:
    """Join every sidecar, evaluation and benchmark into results/summary.csv."""
    from mobileforge.summary import build_rows, summarize

    artifacts = [files.read_json(files.sidecar_path(path)) for path in job.input["artifacts"]]
    evaluations = {}
    for path in job.input["evaluations"]:
        record = files.read_json(path)
        evaluations[record["artifact"]] = record
    benchmarks = {}
    for path in job.input["benchmarks"]:
        record = files.read_json(path)
        benchmarks[(record["artifact"], record["device"])] = record
    rows = build_rows(artifacts, evaluations, benchmarks, job.params["devices"])
    frame = summarize(rows, job.params["accuracy_budget"])
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format="%.6g")
    files.write_bytes_atomic(job.output["summary"], buffer.getvalue().encode())
    job.log(f"{len(frame)} rows -> {job.output['summary']}")


@without_torch
def plots(job: Job) -> None:
    """Latency-vs-accuracy and size plots of the summary."""
    import pandas as pd

    from mobileforge.report import plot_latency_accuracy, plot_sizes

    summary = pd.read_csv(job.input["summary"], keep_default_na=True)
    plot_latency_accuracy(summary, job.output["latency_accuracy"])
    plot_sizes(summary, job.output["sizes"])
