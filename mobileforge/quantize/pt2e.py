"""PT2E int8 for ExecuTorch programs (``.pte``): capture, prepare, calibrate, convert. Static
int8, or the dynamic recipe (``int8_dynamic``, XNNPACK only: :func:`_xnnpack_dynamic`).

The fused fp32 model is captured with ``torch.export`` (dynamic batch where the model allows it,
so calibration runs in batches), annotated by the backend's quantizer, calibrated on the
calibration split and converted. The converted module is what :mod:`mobileforge.export.pte`
lowers; it runs in eager PyTorch too (float in, float out, explicit quantize/dequantize ops).
The int8 job saves the one it chose (:func:`save_converted`) and the export lowers that one
(:func:`load_converted`) instead of calibrating again.
The ``.ptl`` path's FX int8 is :mod:`mobileforge.quantize.fx`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mobileforge import files, layout
from mobileforge.provenance import number_graphs, shallow_node_provenance
from mobileforge.quantize.clamps import make_clamp_aware
from mobileforge.quantize.observers import describe, pt2e_activation_observer
from mobileforge.quantize.recipe import Recipe

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

    from mobileforge.quantize.budget import Control, Int8Choice

#: .pte backends that have a PT2E quantizer here (Vulkan reuses XNNPACK's: see ``quantizer``).
QUANTIZER_BACKENDS = layout.INT8_BACKENDS["pte"]


def _fp32_filter(fp32_layers: tuple[str, ...]) -> Any:
    """A node filter that is False for nodes of the given modules (by ``nn_module_stack``)."""
    from torchao.quantization.pt2e.quantizer.utils import get_module_name_filter

    in_layer = [get_module_name_filter(name) for name in fp32_layers]

    def quantize_node(node: torch.fx.Node) -> bool:
        return not any(belongs(node) for belongs in in_layer)

    return quantize_node


def _xnnpack_config(recipe: Recipe) -> tuple[Any, str]:
    """XNNPACK's symmetric static int8 config with the recipe's activation observer."""
    import dataclasses

    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        get_symmetric_quantization_config,
    )

    config = get_symmetric_quantization_config(is_per_channel=recipe.per_channel)
    name = describe(recipe.observer, recipe.percentile)
    if recipe.observer == "histogram":  # the config's own observer
        return config, name
    observer = pt2e_activation_observer(recipe.observer, recipe.percentile, eps=2**-12)
    activation = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=observer)
    config = dataclasses.replace(config, input_activation=activation, output_activation=activation)
    return config, name


def _xnnpack_dynamic(recipe: Recipe) -> tuple[Any, dict[str, Any]]:
    """The dynamic recipe (``int8_dynamic``): XNNPACK's dynamic config on ``nn.Linear`` (int8
    weights, per channel where the recipe says; int8 activations quantized per call), everything
    else left in fp32 (XNNPACK runs it in fp32).

    Not static int8 around the linear layers: on a ViT-like model (a conv patch embedding, three
    pre-norm transformer blocks, 41 M MACs at 32x32; Intel Xeon with AVX-512 VNNI, one thread,
    60 interleaved rounds of 20 runs) dynamic linear layers with everything else fp32 ran at
    0.955 (quartiles 0.938-0.972) the latency of dynamic linear layers with static int8
    convolutions, adds and pooling, and at 0.967 (0.954-0.985) that of all-static int8, at
    the same accuracy (82.6 / 82.5 / 82.7 % top-1, fp32 82.4).
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torch import nn

    dynamic = get_symmetric_quantization_config(is_per_channel=recipe.per_channel, is_dynamic=True)
    chosen = XNNPACKQuantizer().set_module_type(nn.Linear, dynamic)
    settings = {
        "quantizer": "XNNPACKQuantizer",
        "config": "get_symmetric_quantization_config(is_dynamic=True) for nn.Linear only",
        "is_per_channel": recipe.per_channel,
        "is_dynamic": True,
        "weight": "int8 symmetric [-127, 127], "
        + ("per-channel (axis 0)" if recipe.per_channel else "per-tensor"),
        "activation": "nn.Linear: int8 affine, per-tensor, chosen per call (dynamic); "
        "everything else fp32",
    }
    if recipe.fp32_layers:
        chosen.set_filter_function(_fp32_filter(recipe.fp32_layers))
    return chosen, settings


def quantizer(backend: str, recipe: Recipe) -> tuple[Any, dict[str, Any]]:
    """Return the PT2E quantizer for a backend and its settings (JSON-serialisable).

    XNNPACK and Vulkan share the XNNPACK quantizer: executorch's ``VulkanQuantizer`` only does
    weight-only / dynamic quantization of linear layers, while the Vulkan partitioner lowers the
    XNNPACK quantizer's static int8 conv/linear patterns to its own ``q8ta`` kernels (that is what
    executorch's Vulkan tests do). Core ML has its own quantizer built on coremltools' config.

    ``recipe.fp32_layers`` stay in float: XNNPACK's ``set_module_name`` refuses ``None`` in
    executorch 1.5.1, so they are excluded through ``set_filter_function`` with torchao's own
    module-name filter (the same ``nn_module_stack`` match ``set_module_name`` uses); Core ML
    takes ``module_name_configs={name: None}``.
    """
    import torch

    if recipe.dynamic:
        if backend != "xnnpack":
            raise ValueError(
                f"no dynamic int8 recipe for .pte backend {backend!r}: only xnnpack has one "
                "(quantize.mode dynamic builds int8_dynamic for xnnpack only)"
            )
        return _xnnpack_dynamic(recipe)
    if backend in ("xnnpack", "vulkan"):
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

        config, observer = _xnnpack_config(recipe)
        settings = {
            "quantizer": "XNNPACKQuantizer",
            "config": "get_symmetric_quantization_config",
            "is_per_channel": recipe.per_channel,
            "weight": "int8 symmetric [-127, 127], "
            + ("per-channel (axis 0)" if recipe.per_channel else "per-tensor"),
            "activation": f"int8 affine [-128, 127], per-tensor, {observer}",
        }
        chosen = XNNPACKQuantizer().set_global(config)
        if recipe.fp32_layers:
            chosen.set_filter_function(_fp32_filter(recipe.fp32_layers))
        return chosen, settings
    if backend == "coreml":
        import coremltools as ct
        from executorch.backends.apple.coreml.quantizer import CoreMLQuantizer

        if recipe.observer != "histogram":
            raise ValueError(
                f"quantize.observer {recipe.observer!r}: the Core ML quantizer picks its own "
                "observers; use 'histogram' (the default) for coreml"
            )
        config = ct.optimize.torch.quantization.LinearQuantizerConfig(
            global_config=ct.optimize.torch.quantization.ModuleLinearQuantizerConfig(
                quantization_scheme="symmetric",
                activation_dtype=torch.quint8,
                weight_dtype=torch.qint8,
                weight_per_channel=recipe.per_channel,
            ),
            module_name_configs={name: None for name in recipe.fp32_layers},
        )
        settings = {
            "quantizer": "CoreMLQuantizer",
            "config": "LinearQuantizerConfig(ModuleLinearQuantizerConfig)",
            "quantization_scheme": "symmetric",
            "activation_dtype": "quint8",
            "weight_dtype": "qint8",
            "is_per_channel": recipe.per_channel,
        }
        return CoreMLQuantizer(config), settings
    raise ValueError(
        f"no PT2E quantizer for .pte backend {backend!r}; expected one of {QUANTIZER_BACKENDS}"
    )


def _capture(
    model: torch.nn.Module, example_input: torch.Tensor, calibration: torch.Tensor, batch: int
) -> tuple[torch.export.ExportedProgram, int, bool]:
    """Capture the model with a dynamic batch dimension when the model allows it.

    The lowered program keeps the example input's (fixed) batch size, but calibrating one
    sample at a time is slow; so the graph that is observed is exported with a dynamic batch
    (``Dim.AUTO``, hinted with a real calibration batch). If the model pins its batch size,
    export specialises it and calibration falls back to the example input's batch size.
    Returns the program, the calibration batch size and whether the batch is dynamic.
    """
    import torch

    chunk = min(batch, len(calibration))
    if chunk > 1:
        try:
            ep = torch.export.export(
                model, (calibration[:chunk],), dynamic_shapes=({0: torch.export.Dim.AUTO},)
            )
        except Exception:  # e.g. reshape(1, ...) in forward: the static export decides below
            ep = None
        if ep is not None:
            user_inputs = [
                n
                for n in ep.graph.nodes
                if n.op == "placeholder" and n.name in ep.graph_signature.user_inputs
            ]
            if user_inputs and isinstance(user_inputs[0].meta["val"].shape[0], torch.SymInt):
                return ep, chunk, True
    ep = torch.export.export(model, (example_input,))
    return ep, int(example_input.shape[0]), False


def _export_for_calibration(
    model: torch.nn.Module, example_input: torch.Tensor, calibration: torch.Tensor, batch: int
) -> tuple[torch.fx.GraphModule, int, bool]:
    """The module to prepare (see :func:`_capture`), the calibration batch size and whether the
    batch is dynamic."""
    ep, chunk, dynamic = _capture(model, example_input, calibration, batch)
    return ep.module(), chunk, dynamic


def _calibrate(
    module: torch.fx.GraphModule, calibration: torch.Tensor, chunk: int, dynamic: bool
) -> int:
    """Run calibration data through the observed module; return how many samples it saw.

    With a static batch, a trailing partial batch cannot be fed and is skipped.
    """
    seen = 0
    for start in range(0, len(calibration), chunk):
        part = calibration[start : start + chunk]
        if len(part) != chunk and not dynamic:
            break
        module(part)
        seen += len(part)
    return seen


def prepare_pt2e_model(
    model: torch.nn.Module,
    example_input: torch.Tensor,
    backend: str,
    calibration: torch.Tensor,
    recipe: Recipe,
) -> tuple[torch.fx.GraphModule, dict[str, Any]]:
    """Capture, annotate and calibrate: the observed module, still computing in fp32.

    Calibration sees the first ``recipe.calibration_samples`` images of ``calibration`` in
    batches of ``recipe.batch_size``. Returns the prepared module and the sidecar settings
    (``quantizer``, ``calibration_samples``).
    """
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    info: dict[str, Any] = {}
    chosen, info["quantizer"] = quantizer(backend, recipe)
    example_input = example_input.detach().to(torch.float32).contiguous()
    calibration = calibration[: recipe.calibration_samples].detach().to(torch.float32)
    with torch.no_grad(), shallow_node_provenance():
        captured, chunk, dynamic = _export_for_calibration(
            model.eval(), example_input, calibration, recipe.batch_size
        )
        prepared = prepare_pt2e(captured, chosen)
        if recipe.clamp_aware:
            make_clamp_aware(prepared)
        info["calibration_samples"] = _calibrate(prepared, calibration, chunk, dynamic)
    return prepared, info


def quantize_pt2e(
    model: torch.nn.Module,
    example_input: torch.Tensor,
    backend: str,
    calibration: torch.Tensor,
    recipe: Recipe | None = None,
) -> tuple[torch.fx.GraphModule, dict[str, Any]]:
    """PT2E static int8 for ``backend``: capture, prepare, calibrate, convert.

    Returns the converted module (runnable in eager PyTorch: float in, float out, with explicit
    quantize/dequantize ops, i.e. the numerics the lowered program should reproduce) and its
    settings for the sidecar (``quantizer``, ``calibration_samples``). ``export_pte`` exports and
    lowers exactly this module (after :func:`mobileforge.prune.pt2e.prune_converted` for
    ``int8_pruned``).
    """
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    prepared, info = prepare_pt2e_model(
        model, example_input, backend, calibration, recipe or Recipe()
    )
    with torch.no_grad(), shallow_node_provenance():
        converted = convert_pt2e(prepared)
    return converted, info


def quantize_within_budget(
    fused: torch.nn.Module,
    example_input: torch.Tensor,
    backend: str,
    recipe: Recipe,
    control: Control,
    ranking: list[str],
    accuracy_budget: float | None,
    max_fp32_layers: int,
    log: Callable[[str], Any] = print,
) -> Int8Choice:
    """PT2E static int8 for ``backend`` within the accuracy budget
    (:func:`mobileforge.quantize.budget.keep_within_budget`): the converted program kept, with
    its quantizer settings and calibration count (``calibration``)."""
    from mobileforge.quantize.budget import Int8Choice, keep_within_budget

    conversions: dict[tuple[str, ...], dict[str, Any]] = {}  # each build's settings

    def build(fp32_layers: tuple[str, ...]) -> Any:
        converted, conversions[fp32_layers] = quantize_pt2e(
            fused, example_input, backend, control.images, recipe.with_fp32_layers(fp32_layers)
        )
        return converted

    converted, budget = keep_within_budget(
        build,
        control.logits,
        control.fp32_logits,
        control.labels,
        ranking,
        accuracy_budget,
        max_fp32_layers,
        log,
    )
    kept = tuple(budget["fp32_layers"])
    return Int8Choice(converted, recipe.with_fp32_layers(kept), budget, conversions[kept])


def _drop_unread_state(module: torch.fx.GraphModule) -> int:
    """Remove the parameters and buffers no node of ``module`` reads; returns how many.

    ``convert_pt2e`` replaces each quantized float weight by an int8 constant but leaves the float
    one on the module, and ``torch.export`` saves every parameter, read or not.
    """
    read = {node.target for node in module.graph.nodes if node.op == "get_attr"}
    unread = [
        name
        for name, _ in (*module.named_parameters(), *module.named_buffers())
        if name not in read
    ]
    for name in unread:
        owner, _, attribute = name.rpartition(".")
        delattr(module.get_submodule(owner), attribute)
    return len(unread)


def save_converted(
    converted: torch.fx.GraphModule,
    example_input: torch.Tensor,
    calibration: torch.Tensor,
    recipe: Recipe,
    path: str | os.PathLike[str],
) -> dict[str, Any]:
    """Save a converted module as a ``torch.export`` program (``.pt2``), atomically.

    It is captured as its model was for calibration (:func:`_capture`: a dynamic batch where
    the model allows it), so the loaded module (:func:`load_converted`) still runs the
    calibration split in batches (the unstructured prune points' budget search) and
    :func:`mobileforge.export.pte.lower` lowers it at the example input's batch to the bytes the
    converted module itself lowers to. The float weights ``convert_pt2e`` left unread are
    removed from ``converted`` first (:func:`_drop_unread_state`: ResNet-18's program is 12 MB
    instead of 57), the calibration batch that hinted the batch size is not kept, and the graphs
    named in its provenance are numbered (:func:`mobileforge.provenance.number_graphs`), so one
    converted module saves to one set of bytes in every process. Returns what to record of it:
    ``dynamic_batch``.
    """
    import torch

    example_input = example_input.detach().to(torch.float32).contiguous()
    calibration = calibration[: recipe.calibration_samples].detach().to(torch.float32)
    _drop_unread_state(converted)
    with torch.no_grad(), shallow_node_provenance():
        program, _, dynamic = _capture(converted, example_input, calibration, recipe.batch_size)
    number_graphs(program.graph_module)
    program.example_inputs = None
    with files.atomic_writer(path) as handle:
        torch.export.save(program, handle)
    return {"dynamic_batch": dynamic}


def load_converted(path: str | os.PathLike[str]) -> torch.fx.GraphModule:
    """The converted module :func:`save_converted` saved: runnable in eager PyTorch, prunable
    (:class:`mobileforge.prune.pt2e.ConvertedLayers`) and lowerable like the original."""
    import torch

    # Its quantize/dequantize ops, registered as convert_pt2e registers them (torchao imports
    # the same library), or the program does not deserialise in a fresh process.
    from torch.ao.quantization.fx._decomposed import quantized_decomposed_lib  # noqa: F401

    return torch.export.load(path).module()
