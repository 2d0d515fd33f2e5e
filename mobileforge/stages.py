"""One function per workflow rule: read the job's inputs, call the library, write its outputs.

Each stage writes one artifact atomically plus a JSON sidecar (sha256, size, the settings used,
torch version, which path produced it). Settings arrive as Snakemake ``params`` so that editing
one model's or one device's config reruns exactly the jobs that depend on it.
"""

from __future__ import annotations

import platform
from typing import Any

from mobileforge import files
from mobileforge.job import Job, preloads, without_torch
from mobileforge.warm.client import EXECUTORCH_MODULES

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


@preloads(EXECUTORCH_MODULES, when=lambda job: job.wildcards["fmt"] == "pte")
def sensitivity(job: Job) -> None:
    """Per-layer int8 damage for one quantizer (FX engine or .pte backend), ranked."""
    import torch

    from mobileforge import chain
    from mobileforge.data import load_dataset
    from mobileforge.quantize import fx, pt2e
    from mobileforge.quantize.recipe import Recipe
    from mobileforge.quantize.sensitivity import METHOD, layer_sensitivity

    fused, meta = chain.load_fused_model(job.input["fused"])
    calibration = load_dataset(job.input["data"])["calib_x"]
    recipe = Recipe.from_settings(job.params["quantize"])
    fmt, key = job.wildcards["fmt"], job.wildcards["key"]
    # Ranking only needs a few hundred images: the ones calibration saw.
    control = calibration[: recipe.calibration_samples]
    if fmt == "ptl":
        with fx.quantized_engine(key):
            prepared = fx.prepare(fused, key, recipe, calibration[:1])
            fx.calibrate(prepared, calibration, recipe)
            weight_observer = fx.qconfig_mapping(key, recipe).global_qconfig.weight
            layers = layer_sensitivity(prepared, fused, control, weight_observer, job.log)
    else:
        prepared, _ = pt2e.prepare_pt2e_model(
            fused, chain.example_input(meta), key, calibration, recipe
        )
        with torch.no_grad():
            layers = layer_sensitivity(prepared, fused, control, None, job.log)
    files.write_json_atomic(
        job.output["sensitivity"],
        {
            "model": meta["model"],
            "variant": job.wildcards["qvariant"],
            "format": fmt,
            "quantizer": key,
            "recipe": recipe.as_record(),
            "control_images": len(control),
            "method": METHOD,
            "layers": layers,
            **_versions(job),
        },
    )
    job.log(f"{len(layers)} layers; most sensitive: {[layer['layer'] for layer in layers[:3]]}")


def _ranking(job: Job) -> list[str]:
    """Layers most damaging first, from the sensitivity input (absent without a budget)."""
    path = job.input.get("sensitivity")
    return [layer["layer"] for layer in files.read_json(path)["layers"]] if path else []


def _control(job: Job, fused: Any) -> tuple[Any, Any, Any, Any]:
    """Calibration split (images, labels or None) and the fp32 logits on it."""
    from mobileforge.data import load_dataset
    from mobileforge.runtime.evaluate import collect_logits

    data = load_dataset(job.input["data"])
    fp32_logits = collect_logits(fused, data["calib_x"], batch_size=256)
    return data["calib_x"], data.get("calib_y"), fp32_logits, data


def quantize(job: Job) -> None:
    """FX static int8 for one engine, within the accuracy budget (layers kept fp32 if needed)."""
    import dataclasses

    from mobileforge import chain
    from mobileforge.quantize.budget import choose_reduce_range, keep_within_budget
    from mobileforge.quantize.fx import quantize_static, quantized_engine
    from mobileforge.quantize.recipe import AUTO, Recipe
    from mobileforge.runtime.evaluate import collect_logits
    from mobileforge.stagefile import save_stage

    fused, meta = chain.load_fused_model(job.input["fused"])
    calibration, labels, fp32_logits, _ = _control(job, fused)
    settings = job.params["quantize"]
    engine = job.wildcards["engine"]
    recipe = Recipe.from_settings(settings)
    seen = {}

    def build(fp32_layers: tuple[str, ...], candidate: Recipe | None = None) -> Any:
        model, seen["images"] = quantize_static(
            fused, engine, (candidate or recipe).with_fp32_layers(fp32_layers), calibration
        )
        return model

    def logits_of(model: Any) -> Any:
        return collect_logits(model, calibration, batch_size=256)

    with quantized_engine(engine):
        reduce_range_choice = first = None
        if settings.get("reduce_range") == AUTO and engine == "x86":  # QNNPACK: no 7-bit mode
            chosen, reduce_range_choice, first = choose_reduce_range(
                lambda width: build((), dataclasses.replace(recipe, reduce_range=width)),
                logits_of,
                fp32_logits,
                labels,
                job.log,
            )
            recipe = dataclasses.replace(recipe, reduce_range=chosen)
        model, budget = keep_within_budget(
            build,
            logits_of,
            fp32_logits,
            labels,
            _ranking(job),
            settings["accuracy_budget"],
            settings["max_fp32_layers"],
            job.log,
            first,
        )
        state_dict = model.state_dict()
    recipe = recipe.with_fp32_layers(budget["fp32_layers"])
    save_stage(
        job.output["model"],
        state_dict,
        {
            **meta,
            "stage": "int8",
            "variant": job.wildcards["qvariant"],
            "engine": engine,
            "recipe": recipe.as_record(),
            "int8_budget": _budget_summary(budget),
        },
        job.output["sidecar"],
        {
            "calibration_images": seen["images"],
            "quantize": settings,
            "reduce_range_choice": reduce_range_choice,
            "budget": budget,
            **_versions(job),
        },  # fmt: skip
    )


@preloads(EXECUTORCH_MODULES)
def quantize_pte(job: Job) -> None:
    """PT2E int8 for one .pte backend within the accuracy budget: the recipe, and the converted
    program it chose, saved for export_pte to lower (so that nothing is calibrated twice)."""
    from mobileforge import chain
    from mobileforge.quantize.budget import keep_within_budget
    from mobileforge.quantize.pt2e import quantize_pt2e, save_converted
    from mobileforge.quantize.recipe import Recipe
    from mobileforge.runtime.evaluate import collect_logits

    fused, meta = chain.load_fused_model(job.input["fused"])
    calibration, labels, fp32_logits, _ = _control(job, fused)
    settings = job.params["quantize"]
    backend = job.wildcards["backend"]
    recipe = Recipe.from_settings(settings)
    example = chain.example_input(meta)
    # Each build's quantizer settings and calibration count, by its fp32 layers.
    conversions: dict[tuple[str, ...], dict[str, Any]] = {}

    def build(fp32_layers: tuple[str, ...]) -> Any:
        converted, conversions[fp32_layers] = quantize_pt2e(
            fused, example, backend, calibration, recipe.with_fp32_layers(fp32_layers)
        )
        return converted

    converted, budget = keep_within_budget(
        build,
        lambda model: collect_logits(model, calibration, batch_size=256),
        fp32_logits,
        labels,
        _ranking(job),
        settings["accuracy_budget"],
        settings["max_fp32_layers"],
        job.log,
    )
    recipe = recipe.with_fp32_layers(budget["fp32_layers"])
    saved = save_converted(converted, example, calibration, recipe, job.output["program"])
    program = files.write_sidecar(
        job.output["program"],
        job.output["sidecar"],
        {
            "stage": "int8_program",
            "model": meta["model"],
            "variant": job.wildcards["qvariant"],
            "backend": backend,
            "recipe": recipe.as_record(),
            **conversions[recipe.fp32_layers],
            "input_shape": meta["input_shape"],
            **saved,
            **_versions(job),
        },
    )
    job.log(f"saved the converted program {program['artifact']}: {program['size_bytes']} B")
    files.write_json_atomic(
        job.output["recipe"],
        {
            "stage": "int8_recipe",
            "model": meta["model"],
            "variant": job.wildcards["qvariant"],
            "backend": backend,
            "recipe": recipe.as_record(),
            "quantize": settings,
            "budget": budget,
            **_versions(job),
        },
    )


#: Calibration images each per-layer pruning damage is measured on (ranking only; the budget
#: is checked on the whole calibration split).
PRUNE_PROBE_IMAGES = 64


def _unstructured_within_budget(job: Job, layers: Any, fused: Any) -> tuple[Any, dict[str, Any]]:
    """Per-layer l1 amounts by sensitivity, at the largest overall amount within the budget."""
    from mobileforge.prune.allocation import Target, damage_curves, fit_budget
    from mobileforge.quantize.budget import measure
    from mobileforge.runtime.evaluate import collect_logits

    calibration, labels, fp32_logits, _ = _control(job, fused)
    settings = job.params["prune"]

    def logits(model: Any, images: Any) -> Any:
        return collect_logits(model, images, batch_size=256)

    target = Target(
        sizes=layers.sizes,
        prune=layers.apply,
        logits=logits,
        loss=lambda model: measure(fp32_logits, logits(model, calibration), labels),
    )
    curves = damage_curves(target, calibration[:PRUNE_PROBE_IMAGES], job.log)
    return fit_budget(target, curves, settings["amount"], settings["accuracy_budget"], job.log)


def _prune_summary(record: dict[str, Any]) -> dict[str, Any]:
    """What an artifact's sidecar keeps of its pruning decision."""
    return {"met": record["within_budget"], "reason": record["reason"]}


def prune(job: Job) -> None:
    """l1-unstructured pruning of the int8 weights, per-layer amounts within the budget."""
    from mobileforge import chain
    from mobileforge.prune.unstructured import QuantizedLayers, weight_sparsity
    from mobileforge.quantize.fx import quantized_engine
    from mobileforge.stagefile import save_stage

    model, meta = chain.load_quantized_model(job.input["model"])
    fused, _ = chain.load_fused_model(job.input["fused"])
    with quantized_engine(meta["engine"]):
        model, record = _unstructured_within_budget(job, QuantizedLayers(model), fused)
        sparsity = weight_sparsity(model)
        state_dict = model.state_dict()
    job.log(f"sparsity {sparsity:.4f} at overall amount {record['amount']:.4g}")
    prune = {"method": "l1_unstructured", **record}
    save_stage(
        job.output["model"],
        state_dict,
        {
            **meta,
            "stage": "int8_pruned",
            "variant": job.wildcards["uvariant"],
            "prune": {key: prune[key] for key in ("method", "amount", "requested_amount")},
            "prune_budget": _prune_summary(record),
            "sparsity": sparsity,
        },
        job.output["sidecar"],
        {"prune": prune, **_versions(job)},
    )


def prune_channel(job: Job) -> None:
    """Remove channels of the trained model, fine-tune it distilled from the unpruned, fuse it.

    Pruned before fusion: with its BatchNorm layers the pruned network re-normalises its thinner
    activations while it fine-tunes. A BN-folded MobileNetV2 1.0 pruned at 0.6 has lost its
    signal (outputs at a tenth of their scale, chance accuracy) and three epochs of fine-tuning
    left it at chance; the same model pruned with its BN layers was at 67 % after 30 steps.
    """
    import copy

    import torch

    from mobileforge import chain
    from mobileforge import train as training
    from mobileforge.data import load_dataset
    from mobileforge.fuse import fuse as fuse_model
    from mobileforge.prune.channel import parameter_count, prune_channels, pruned_structure
    from mobileforge.stagefile import save_stage

    model, meta = chain.load_checkpoint_model(job.input["checkpoint"])
    data = load_dataset(job.input["data"])
    settings = job.params["prune"]
    teacher = copy.deepcopy(model).eval()
    record = prune_channels(
        model,
        chain.example_input(meta),
        settings["amount"],
        settings["scope"],
        settings["round_to"],
        job.log,
    )
    finetune, train = settings["finetune"], settings["train"]
    if finetune["epochs"] > 0:
        history = training.train_model(
            model,
            {"train_x": data["train_x"], "train_y": data["train_y"]},  # the train split only
            epochs=finetune["epochs"],
            batch_size=train["batch_size"],
            lr=finetune["lr"],
            seed=train["seed"],
            momentum=train["momentum"],
            weight_decay=train["weight_decay"],
            teacher=teacher,
            distillation=finetune["distillation"],
            temperature=finetune["temperature"],
            warmup_epochs=min(1.0, 0.25 * finetune["epochs"]),
            log=job.log,
        )
        record["finetune"] = {**finetune, "history": history["epochs"]}
    fused = fuse_model(model)
    # Parameters as the int8 and export stages see them: of the fused models, BN folded.
    record["before"]["params"] = parameter_count(fuse_model(teacher))
    record["after"]["params"] = parameter_count(fused)
    state_dict = {key: value.detach().clone() for key, value in fused.state_dict().items()}
    pruned_meta = {
        **meta,
        "stage": "pruned",
        "pruned_structure": pruned_structure(fused),
        "macs": record["after"]["macs"],
        "params": record["after"]["params"],
        "pruned": {key: record[key] for key in ("method", "amount", "scope", "round_to")},
    }
    # The saved stage must rebuild from architecture + structure + weights alone.
    rebuilt = chain.rebuild_stage(state_dict, pruned_meta)
    example = data["calib_x"][:2]
    with torch.no_grad():
        if not torch.equal(rebuilt(example), fused(example)):
            raise RuntimeError("the pruned model does not rebuild from its recorded structure")
    save_stage(
        job.output["model"], state_dict, pruned_meta, job.output["sidecar"],
        {"prune": record, **_versions(job)},
    )  # fmt: skip


def _budget_summary(budget: dict[str, Any]) -> dict[str, Any]:
    """What an artifact's sidecar keeps of its int8 budget decision (the stage has the steps)."""
    return {"met": budget["budget_met"], "reason": budget["reason"], "loss": budget["loss"]}


def _artifact_info(
    job: Job,
    meta: dict[str, Any],
    fmt: str,
    variant: str,
    backend: str,
    decision: Any = None,
) -> dict[str, Any]:
    """The sidecar fields every artifact has; an int8 artifact's recipe and budget decision come
    from its stage meta (FX) or from ``decision``, the ``.pte`` recipe record."""
    decision = decision or meta
    recipe = decision.get("recipe")
    budget = decision.get("int8_budget") or (
        _budget_summary(decision["budget"]) if "budget" in decision else None
    )
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
        "fp32_layers": None if recipe is None else recipe["fp32_layers"],
        "int8_budget": budget,
        # l1 points: from the int8_pruned stage; channel points: from the pruned fp32 stage.
        "prune": meta.get("prune") or meta.get("pruned"),
        "prune_budget": meta.get("prune_budget"),
        **_versions(job),
    }


def export_ptl(job: Job) -> None:
    """Frozen (or plain scripted, when smaller) lite-interpreter module."""
    import torch

    from mobileforge import chain
    from mobileforge.export.ptl import export_ptl as export
    from mobileforge.quantize.fx import quantized_engine

    model, meta = chain.load_stage_model(job.input["model"])
    backend = job.wildcards["backend"]
    variant = meta.get("variant", "fp32")
    engine = meta.get("engine", torch.backends.quantized.engine)
    with quantized_engine(engine):
        data, info = export(model, backend, chain.example_input(meta), log=job.log)
    record = files.write_artifact(
        job.output["artifact"],
        data,
        job.output["sidecar"],
        {
            **_artifact_info(job, meta, "ptl", variant, backend),
            **info,
            "compressed_bytes": files.compressed_size(data),
        },
    )
    job.log(f"wrote {record['artifact']}: {record['size_bytes']} B via {info['optimization']}")


@preloads(EXECUTORCH_MODULES)
def export_pte(job: Job) -> None:
    """ExecuTorch program lowered to one backend: fp32; int8, the converted program quantize_pte
    chose and saved (never calibrated again here); or, for unstructured prune points, that
    program with per-layer amounts within the budget."""
    from mobileforge import chain
    from mobileforge.export import pte
    from mobileforge.prune.pt2e import ConvertedLayers
    from mobileforge.quantize.pt2e import load_converted
    from mobileforge.stagefile import load_stage

    pte.check_executorch()
    variant, backend = job.wildcards["variant"], job.wildcards["backend"]
    decision = extra = None
    if "program" not in job.input:
        fused, meta = chain.load_fused_model(job.input["fused"])
        data, info = pte.export_pte(fused, chain.example_input(meta), backend, "fp32")
    else:
        state_dict, meta = load_stage(job.input["fused"])  # the program is this model's int8
        example = chain.example_input(meta)
        decision = files.read_json(job.input["recipe"])
        path = job.input["program"]
        saved = files.read_json(files.sidecar_path(path))
        converted = load_converted(path)
        info = {key: saved[key] for key in ("quantizer", "calibration_samples")}
        if job.params["prune"] is None:  # int8 of the fused or of a channel-pruned model
            data, lowering = pte.lower(converted, example, backend, "int8")
        else:  # params carry prune settings only for points that prune int8 weights
            layers = ConvertedLayers(converted)
            fused = chain.rebuild_stage(state_dict, meta)  # for its logits: the budget's fp32
            _, record = _unstructured_within_budget(job, layers, fused)
            data, lowering = pte.lower(converted, example, backend, "int8_pruned")
            info["sparsity"] = layers.sparsity()
            extra = {
                "prune": {"method": "l1_unstructured", **record},
                "prune_budget": _prune_summary(record),
            }
        info.update(lowering)
        # Which saved program this was lowered from (and the recipe that chose it).
        info["int8_program"] = {
            "path": path,
            "sha256": files.sha256_file(path),
            "recipe": job.input["recipe"],
        }
    # export_pte reports no pruning for unpruned programs: the model's own (channel) pruning
    # record from _artifact_info must not be overwritten by those blanks.
    info = {key: value for key, value in info.items() if value is not None}
    record = files.write_artifact(
        job.output["artifact"],
        data,
        job.output["sidecar"],
        {
            **_artifact_info(job, meta, "pte", variant, backend, decision),
            **info,
            "variant": variant,
            "optimization": f"to_edge_transform_and_lower({backend})",
            "compressed_bytes": files.compressed_size(data),
            **(extra or {}),
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
    """Time the artifact on one device, ``repeats`` processes; one benchmark per device at once.

    A failure is also written down (:mod:`mobileforge.salvage`), so a run that ends in errors
    can still build the summary from what succeeded, with the error in the failed row's note.
    """
    startup_s = job.age_s()  # interpreter, Snakemake's script preamble, imports
    from mobileforge import salvage
    from mobileforge.bench import farm
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
        "repeats": device["repeats"],
        "cooldown": device["cooldown"],
    }
    key = farm.device_key(device)
    try:
        with device_lock(key):
            if device["kind"] == "host":
                from mobileforge.bench.host import run_host_repeats

                result = run_host_repeats(artifact, engine=sidecar.get("engine"), **common)
            else:
                from mobileforge.bench.adb import run_adb_benchmark
                from mobileforge.bench.runstate import RunState

                operations = job.params["operations"]
                result = run_adb_benchmark(
                    artifact,
                    serial=device["serial"],
                    runner=job.input["runner"],
                    adb_host=device["adb_host"],
                    adb_port=device["adb_port"],
                    remote_dir=device["remote_dir"],
                    timeouts=operations["timeouts"],
                    retries=operations["retries"],
                    state=RunState(key),
                    job=f"benchmark of {artifact} on {name}",
                    **common,
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
    for path in job.input["evaluations"]:
        record = files.read_json(path)
        accuracy[record["artifact"]] = record["accuracy"]
    sidecars = {path: files.read_json(files.sidecar_path(path)) for path in job.input["artifacts"]}
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
            from mobileforge.bench.paired_adb import PhoneArtifact
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
            {"gemm_shape": shape, "precision": precision, "backend": "xnnpack", **_versions(job)},
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
    files.write_json_atomic(job.output["peak"], {**record, "device": name})


@without_torch
def summary(job: Job) -> None:
    """Join sidecars, evaluations, benchmarks and peaks into summary.csv, summary.md and the
    report's summary.html."""
    from mobileforge import summary_tables
    from mobileforge.bench import compare as paired
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
    peaks = {}
    for path in job.input["peaks"]:
        record = files.read_json(path)
        peaks[record["device"]] = record
    comparisons = {}
    for path in job.input["comparisons"]:
        record = paired.check_record(files.read_json(path), path)
        comparisons[(record["model"], record["device"])] = record
    budget = job.params["accuracy_budget"]
    rows = build_rows(
        artifacts, evaluations, benchmarks, job.params["devices"], peaks, comparisons=comparisons
    )
    frame = summarize(rows, budget, job.params["unstable_cv"], comparisons)
    out = job.output
    summary_tables.write_summaries(
        frame, peaks, budget, out["summary"], out["markdown"], out["html"]
    )
    job.log(f"{len(frame)} rows -> {job.output['summary']}, {job.output['markdown']}")


@without_torch
def plots(job: Job) -> None:
    """Every figure of the report (params.figures: kind, device, model, path) from the summary
    and the benchmarks' per-iteration samples."""
    import pandas as pd

    from mobileforge.report import draw_figures

    summary = pd.read_csv(job.input["summary"], keep_default_na=True)
    benchmarks = [files.read_json(path) for path in job.input["benchmarks"]]
    draw_figures(job.params["figures"], summary, benchmarks, job.params["accuracy_budget"], job.log)


@without_torch
def plot_sensitivity(job: Job) -> None:
    """Layers ranked by int8 damage per quantizer, the ones kept in fp32 marked."""
    from mobileforge.report import plot_sensitivity as plot

    sensitivities = [files.read_json(path) for path in job.input["sensitivities"]]
    decisions = [files.read_json(path) for path in job.input["decisions"]]
    plot(sensitivities, decisions, job.output["plot"])
