"""Post-training int8 quantization (FX graph mode), per kernel library ("engine"): static, or
the dynamic recipe (``int8_dynamic``: convolutions static int8, linear layers with int8 weights
quantizing their activations at run time, ``torch.ao.quantization.quantize_dynamic``).

The engine decides how packed weights are laid out (and, with ``reduce_range``, x86 keeps
activations to 7 bits so fbgemm's vpmaddubsw kernels cannot overflow on CPUs without VNNI), so
calibration and the saved model are per engine.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch

from mobileforge import layout
from mobileforge.quantize.budget import Control, Int8Choice, choose_reduce_range, keep_within_budget
from mobileforge.quantize.clamps import make_clamp_aware
from mobileforge.quantize.observers import fx_activation_observer
from mobileforge.quantize.recipe import Recipe
from mobileforge.quiet import quiet_quantization_warnings

ENGINES = layout.ENGINES


@contextlib.contextmanager
def quantized_engine(engine: str) -> Iterator[None]:
    """Run with ``torch.backends.quantized.engine`` set to ``engine`` (restored afterwards)."""
    if engine not in torch.backends.quantized.supported_engines:
        raise RuntimeError(
            f"quantized engine {engine!r} is not in this torch build "
            f"(supported: {', '.join(torch.backends.quantized.supported_engines)})"
        )
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def qconfig_mapping(engine: str, recipe: Recipe):  # -> QConfigMapping
    """The engine's default mapping with the recipe's observers and its fp32 layers.

    ``reduce_range`` keeps activations to 7 bits, PyTorch's x86 default, which avoids overflow in
    fbgemm's kernels on x86 CPUs without VNNI; with VNNI, full 8 bits kept int8 within a point of
    fp32 on the default models (7-bit: up to 1.8 points lower), hence the config's ``auto``
    (:func:`mobileforge.quantize.budget.choose_reduce_range`). QNNPACK always uses 8 bits. A
    layer in ``recipe.fp32_layers`` gets no qconfig: FX leaves it in float, with a dequantize
    before it and a quantize after it.
    """
    from torch.ao.quantization import QConfig, QConfigMapping, get_default_qconfig_mapping
    from torch.ao.quantization.observer import (
        default_per_channel_weight_observer,
        default_weight_observer,
    )

    mapping: QConfigMapping = get_default_qconfig_mapping(engine)
    weight = default_per_channel_weight_observer if recipe.per_channel else default_weight_observer
    activation = fx_activation_observer(
        recipe.observer,
        recipe.percentile,
        reduce_range=recipe.reduce_range and engine != "qnnpack",
    )
    mapping.set_global(QConfig(activation=activation, weight=weight))
    for name in recipe.fp32_layers:
        mapping.set_module_name(name, None)
    if recipe.dynamic:  # linear layers are left float here and made dynamic after convert
        import torch.ao.nn.intrinsic as nni

        for linear in (torch.nn.Linear, nni.LinearReLU, torch.nn.functional.linear):
            mapping.set_object_type(linear, None)
    return mapping


def make_dynamic(converted: torch.fx.GraphModule, recipe: Recipe) -> list[str]:
    """Swap the linear layers of a converted model (left float by :func:`qconfig_mapping`), less
    the recipe's fp32 layers, for dynamically quantized ones, in place: int8 weights (per channel
    where the recipe says), activations quantized per batch at run time. Returns their names.

    Per-channel dynamic linear runs on both engines' kernels (fbgemm and QNNPACK).
    """
    from torch.ao.quantization import (
        default_dynamic_qconfig,
        per_channel_dynamic_qconfig,
        quantize_dynamic,
    )

    from mobileforge.quantize.layers import linear_layers

    names = linear_layers(converted, recipe.fp32_layers)
    qconfig = per_channel_dynamic_qconfig if recipe.per_channel else default_dynamic_qconfig
    if names:
        with quiet_quantization_warnings():
            quantize_dynamic(converted, dict.fromkeys(names, qconfig), inplace=True)
    return names


def prepare(
    fused: torch.nn.Module, engine: str, recipe: Recipe, example: torch.Tensor
) -> torch.fx.GraphModule:
    """A copy of the fused model with the recipe's observers inserted (it computes in fp32).

    A copy, because ``convert_fx`` swaps the children of fused modules (``ConvReLU2d``) in
    place: the fused model stays usable for the next calibration.
    """
    from torch.ao.quantization.quantize_fx import prepare_fx

    with quiet_quantization_warnings():
        model = copy.deepcopy(fused).eval()
        prepared = prepare_fx(model, qconfig_mapping(engine, recipe), (example,))
    if recipe.clamp_aware:
        make_clamp_aware(prepared)
    return prepared


def convert(prepared: torch.fx.GraphModule, recipe: Recipe | None = None) -> torch.fx.GraphModule:
    """The int8 model of a calibrated one; its linear layers dynamic where ``recipe`` says."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with quiet_quantization_warnings():
        converted = convert_fx(prepared)
    if recipe is not None and recipe.dynamic:
        make_dynamic(converted, recipe)
    return converted


@torch.no_grad()
def calibrate(
    prepared: torch.nn.Module, calibration: torch.Tensor, recipe: Recipe, log=None
) -> int:
    """Run ``recipe.calibration_batches`` batches through the observers; returns images seen."""
    seen = 0
    for index in range(recipe.calibration_batches):
        chunk = calibration[index * recipe.batch_size : (index + 1) * recipe.batch_size]
        if len(chunk) == 0:
            if log:
                log(f"calibration split exhausted after {index} batches ({seen} images)")
            break
        prepared(chunk)
        seen += len(chunk)
        if log:
            log(f"calibration batch {index + 1}/{recipe.calibration_batches}: {seen} images")
    return seen


def quantize_static(
    fused: torch.nn.Module, engine: str, recipe: Recipe, calibration: torch.Tensor, log=None
) -> tuple[torch.fx.GraphModule, int]:
    """Calibrate the recipe on ``calibration`` and convert; returns (model, images seen)."""
    with quantized_engine(engine):
        prepared = prepare(fused, engine, recipe, calibration[:1])
        seen = calibrate(prepared, calibration, recipe, log)
        return convert(prepared, recipe), seen


def rebuild_quantized(
    fused: torch.nn.Module,
    engine: str,
    recipe: Recipe,
    example: torch.Tensor,
    state_dict: dict[str, torch.Tensor],
) -> torch.fx.GraphModule:
    """Recreate a saved quantized model: same graph from the fused model, then its saved weights.

    Converting an uncalibrated prepared model yields the right structure (the recipe's fp32
    layers included) with placeholder scales; ``load_state_dict`` then restores every quantized
    weight, scale and zero point.
    """
    with quantized_engine(engine):
        model = convert(prepare(fused, engine, recipe, example), recipe)
        model.load_state_dict(state_dict)
    return model


def quantize_within_budget(
    fused: torch.nn.Module,
    engine: str,
    recipe: Recipe,
    control: Control,
    ranking: list[str],
    accuracy_budget: float | None,
    max_fp32_layers: int,
    auto_reduce_range: bool = False,
    log: Callable[[str], Any] = print,
) -> Int8Choice:
    """FX int8 for ``engine`` (static, or dynamic linear layers: ``recipe.dynamic``) within the
    accuracy budget
    (:func:`mobileforge.quantize.budget.keep_within_budget`), layers of ``ranking`` kept fp32 as
    needed. ``auto_reduce_range`` (``quantize.reduce_range: auto``) first picks 7- or 8-bit
    activations on the x86 engine (QNNPACK has no 7-bit mode)."""
    images: dict[tuple[str, ...], int] = {}  # calibration images each build saw

    def build(fp32_layers: tuple[str, ...], candidate: Recipe | None = None) -> Any:
        model, images[fp32_layers] = quantize_static(
            fused, engine, (candidate or recipe).with_fp32_layers(fp32_layers), control.images
        )
        return model

    with quantized_engine(engine):
        reduce_range_choice = first = None
        if auto_reduce_range and engine == "x86":
            chosen, reduce_range_choice, first = choose_reduce_range(
                lambda width: build((), dataclasses.replace(recipe, reduce_range=width)),
                control.logits,
                control.fp32_logits,
                control.labels,
                log,
            )
            recipe = dataclasses.replace(recipe, reduce_range=chosen)
        model, budget = keep_within_budget(
            build,
            control.logits,
            control.fp32_logits,
            control.labels,
            ranking,
            accuracy_budget,
            max_fp32_layers,
            log,
            first,
        )
    kept = tuple(budget["fp32_layers"])
    return Int8Choice(
        model,
        recipe.with_fp32_layers(kept),
        budget,
        {"calibration_images": images[kept]},
        reduce_range_choice,
    )
