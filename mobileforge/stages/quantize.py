"""int8: per-layer sensitivity, FX int8 per engine (.ptl) and PT2E int8 per backend (.pte), each
within the accuracy budget; static, or ``int8_dynamic``'s dynamic linear layers."""

from __future__ import annotations

from typing import Any

from mobileforge import files
from mobileforge.job import Job, preloads
from mobileforge.layout import DYNAMIC
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
    ranked_on = calibration[: recipe.calibration_samples]
    if fmt == "ptl":
        with fx.quantized_engine(key):
            prepared = fx.prepare(fused, key, recipe, calibration[:1])
            fx.calibrate(prepared, calibration, recipe)
            weight_observer = fx.qconfig_mapping(key, recipe).global_qconfig.weight
            layers = layer_sensitivity(prepared, fused, ranked_on, weight_observer, job.log)
    else:
        prepared, _ = pt2e.prepare_pt2e_model(
            fused, chain.example_input(meta), key, calibration, recipe
        )
        with torch.no_grad():
            layers = layer_sensitivity(prepared, fused, ranked_on, None, job.log)
    files.write_json_atomic(
        job.output["sensitivity"],
        {
            "model": meta["model"],
            "variant": job.wildcards["qvariant"],
            "format": fmt,
            "quantizer": key,
            "recipe": recipe.as_record(),
            "control_images": len(ranked_on),
            "method": METHOD,
            "layers": layers,
            **versions(job),
        },
    )
    job.log(f"{len(layers)} layers; most sensitive: {[layer['layer'] for layer in layers[:3]]}")


def _recipe(job: Job) -> Any:
    """The job's recipe: the quantize settings, dynamic for ``int8_dynamic``."""
    from mobileforge.quantize.recipe import Recipe

    recipe = Recipe.from_settings(job.params["quantize"])
    return recipe.made_dynamic() if job.wildcards["qvariant"] == DYNAMIC else recipe


def _dynamic_layers(fused: Any, recipe: Any) -> dict[str, Any]:
    """What a dynamic recipe records: the linear layers quantized at run time (the others of a
    dynamic model are static int8 or, kept by the budget, fp32); nothing for a static one."""
    from mobileforge.quantize.layers import linear_layers

    return {"dynamic_layers": linear_layers(fused, recipe.fp32_layers)} if recipe.dynamic else {}


def quantize(job: Job) -> None:
    """FX int8 for one engine (static; ``int8_dynamic``: linear layers dynamic), within the
    accuracy budget (layers kept fp32 if needed)."""
    from mobileforge import chain
    from mobileforge.quantize.fx import quantize_within_budget, quantized_engine
    from mobileforge.quantize.recipe import AUTO
    from mobileforge.stagefile import save_stage

    fused, meta = chain.load_fused_model(job.input["fused"])
    settings = job.params["quantize"]
    engine = job.wildcards["engine"]
    chosen = quantize_within_budget(
        fused,
        engine,
        _recipe(job),
        control(job, fused),
        ranking(job),
        settings["accuracy_budget"],
        settings["max_fp32_layers"],
        auto_reduce_range=settings.get("reduce_range") == AUTO,
        log=job.log,
    )
    with quantized_engine(engine):
        state_dict = chosen.model.state_dict()
    recipe, budget = chosen.recipe, chosen.budget
    save_stage(
        job.output["model"],
        state_dict,
        {
            **meta,
            "stage": "int8",
            "variant": job.wildcards["qvariant"],
            "engine": engine,
            "recipe": recipe.as_record(),
            **_dynamic_layers(fused, recipe),
            "int8_budget": budget_summary(budget),
        },
        job.output["sidecar"],
        {
            **chosen.calibration,
            "quantize": settings,
            "reduce_range_choice": chosen.reduce_range_choice,
            "budget": budget,
            **versions(job),
        },  # fmt: skip
    )


@preloads(EXECUTORCH_MODULES)
def quantize_pte(job: Job) -> None:
    """PT2E int8 for one .pte backend (static; ``int8_dynamic``: XNNPACK's dynamic linear) within
    the accuracy budget: the recipe, and the converted program it chose, saved for export_pte to
    lower (so that nothing is calibrated twice)."""
    from mobileforge import chain
    from mobileforge.quantize.pt2e import quantize_within_budget, save_converted

    fused, meta = chain.load_fused_model(job.input["fused"])
    checked = control(job, fused)
    settings = job.params["quantize"]
    backend = job.wildcards["backend"]
    example = chain.example_input(meta)
    recipe = _recipe(job)
    ranked = ranking(job)
    if recipe.dynamic:  # only its linear layers are int8: the budget keeps none of the others
        quantized = set(_dynamic_layers(fused, recipe)["dynamic_layers"])
        ranked = [layer for layer in ranked if layer in quantized]
    chosen = quantize_within_budget(
        fused,
        example,
        backend,
        recipe,
        checked,
        ranked,
        settings["accuracy_budget"],
        settings["max_fp32_layers"],
        job.log,
    )
    recipe, budget, converted = chosen.recipe, chosen.budget, chosen.model
    saved = save_converted(converted, example, checked.images, recipe, job.output["program"])
    program = files.write_sidecar(
        job.output["program"],
        job.output["sidecar"],
        {
            "stage": "int8_program",
            "model": meta["model"],
            "variant": job.wildcards["qvariant"],
            "backend": backend,
            "recipe": recipe.as_record(),
            **_dynamic_layers(fused, recipe),
            **chosen.calibration,
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
            **_dynamic_layers(fused, recipe),
            "quantize": settings,
            "budget": budget,
            **versions(job),
        },
    )
