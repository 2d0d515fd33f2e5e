"""int8: per-layer sensitivity, FX static int8 per engine (.ptl) and PT2E int8 per backend
(.pte), each within the accuracy budget."""

from __future__ import annotations

from typing import Any

from mobileforge import files
from mobileforge.job import Job, preloads
from mobileforge.stages.common import budget_summary, control, ranking, versions
from mobileforge.warm.client import EXECUTORCH_MODULES


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
            **versions(job),
        },
    )
    job.log(f"{len(layers)} layers; most sensitive: {[layer['layer'] for layer in layers[:3]]}")


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
    calibration, labels, fp32_logits, _ = control(job, fused)
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
            ranking(job),
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
            "int8_budget": budget_summary(budget),
        },
        job.output["sidecar"],
        {
            "calibration_images": seen["images"],
            "quantize": settings,
            "reduce_range_choice": reduce_range_choice,
            "budget": budget,
            **versions(job),
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
    calibration, labels, fp32_logits, _ = control(job, fused)
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
        ranking(job),
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
            **versions(job),
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
            **versions(job),
        },
    )
