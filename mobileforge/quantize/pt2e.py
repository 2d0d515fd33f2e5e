"""PT2E static int8 for ExecuTorch programs (``.pte``): capture, prepare, calibrate, convert.

The fused fp32 model is captured with ``torch.export`` (dynamic batch where the model allows it,
so calibration runs in batches), annotated by the backend's quantizer, calibrated on the
calibration split and converted. The converted module is what :mod:`mobileforge.export.pte`
lowers; it runs in eager PyTorch too (float in, float out, explicit quantize/dequantize ops).
The ``.ptl`` path's FX int8 is :mod:`mobileforge.quantize.fx`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

#: .pte backends that have a PT2E quantizer here (Vulkan reuses XNNPACK's: see ``quantizer``).
QUANTIZER_BACKENDS = ("xnnpack", "vulkan", "coreml")


def quantizer(backend: str, per_channel: bool) -> tuple[Any, dict[str, Any]]:
    """Return the PT2E quantizer for a backend and its settings (JSON-serialisable).

    XNNPACK and Vulkan share the XNNPACK quantizer: executorch's ``VulkanQuantizer`` only does
    weight-only / dynamic quantization of linear layers, while the Vulkan partitioner lowers the
    XNNPACK quantizer's static int8 conv/linear patterns to its own ``q8ta`` kernels (that is what
    executorch's Vulkan tests do). Core ML has its own quantizer built on coremltools' config.
    """
    import torch

    if backend in ("xnnpack", "vulkan"):
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

        config = get_symmetric_quantization_config(is_per_channel=per_channel)
        settings = {
            "quantizer": "XNNPACKQuantizer",
            "config": "get_symmetric_quantization_config",
            "is_per_channel": per_channel,
            "weight": "int8 symmetric [-127, 127], "
            + ("per-channel (axis 0)" if per_channel else "per-tensor"),
            "activation": "int8 affine [-128, 127], per-tensor, HistogramObserver",
        }
        return XNNPACKQuantizer().set_global(config), settings
    if backend == "coreml":
        import coremltools as ct
        from executorch.backends.apple.coreml.quantizer import CoreMLQuantizer

        config = ct.optimize.torch.quantization.LinearQuantizerConfig(
            global_config=ct.optimize.torch.quantization.ModuleLinearQuantizerConfig(
                quantization_scheme="symmetric",
                activation_dtype=torch.quint8,
                weight_dtype=torch.qint8,
                weight_per_channel=per_channel,
            )
        )
        settings = {
            "quantizer": "CoreMLQuantizer",
            "config": "LinearQuantizerConfig(ModuleLinearQuantizerConfig)",
            "quantization_scheme": "symmetric",
            "activation_dtype": "quint8",
            "weight_dtype": "qint8",
            "is_per_channel": per_channel,
        }
        return CoreMLQuantizer(config), settings
    raise ValueError(
        f"no PT2E quantizer for .pte backend {backend!r}; expected one of {QUANTIZER_BACKENDS}"
    )


def _export_for_calibration(
    model: torch.nn.Module, example_input: torch.Tensor, calibration: torch.Tensor, batch: int
) -> tuple[torch.fx.GraphModule, int, bool]:
    """Capture the model for PT2E with a dynamic batch dimension when the model allows it.

    The lowered program keeps the example input's (fixed) batch size, but calibrating one
    sample at a time is slow; so the graph that is observed is exported with a dynamic batch
    (``Dim.AUTO``, hinted with a real calibration batch). If the model pins its batch size,
    export specialises it and calibration falls back to the example input's batch size.
    Returns the module to prepare, the calibration batch size and whether the batch is dynamic.
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
                return ep.module(), chunk, True
    ep = torch.export.export(model, (example_input,))
    return ep.module(), int(example_input.shape[0]), False


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


def quantize_pt2e(
    model: torch.nn.Module,
    example_input: torch.Tensor,
    backend: str,
    calibration: torch.Tensor,
    *,
    per_channel: bool = True,
    calibration_batch_size: int = 32,
) -> tuple[torch.fx.GraphModule, dict[str, Any]]:
    """PT2E static int8 for ``backend``: capture, prepare, calibrate, convert.

    Returns the converted module (runnable in eager PyTorch: float in, float out, with explicit
    quantize/dequantize ops, i.e. the numerics the lowered program should reproduce) and its
    settings for the sidecar (``quantizer``, ``calibration_samples``). ``export_pte`` exports and
    lowers exactly this module (after :func:`mobileforge.prune.pt2e.prune_converted` for
    ``int8_pruned``).
    """
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    info: dict[str, Any] = {}
    quantizer_, info["quantizer"] = quantizer(backend, per_channel)
    example_input = example_input.detach().to(torch.float32).contiguous()
    calibration = calibration.detach().to(torch.float32)
    with torch.no_grad():
        captured, chunk, dynamic = _export_for_calibration(
            model.eval(), example_input, calibration, calibration_batch_size
        )
        prepared = prepare_pt2e(captured, quantizer_)
        info["calibration_samples"] = _calibrate(prepared, calibration, chunk, dynamic)
        converted = convert_pt2e(prepared)
    return converted, info
