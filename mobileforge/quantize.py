"""Post-training static int8 quantization (FX graph mode), per kernel library ("engine").

The engine decides both the observers (x86 reduces the activation range to avoid overflow in
its vpmaddubsw kernels; QNNPACK does not) and how packed weights are laid out, so calibration
and the saved model are per engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from mobileforge.quiet import quiet_quantization_warnings

ENGINES = ("x86", "qnnpack")


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


def qconfig_mapping(engine: str, per_channel: bool):  # -> QConfigMapping
    """The engine's default mapping, with weight observers per-channel or per-tensor as asked."""
    from torch.ao.quantization import QConfig, QConfigMapping, get_default_qconfig_mapping
    from torch.ao.quantization.observer import (
        default_per_channel_weight_observer,
        default_weight_observer,
    )

    mapping: QConfigMapping = get_default_qconfig_mapping(engine)
    weight = default_per_channel_weight_observer if per_channel else default_weight_observer
    base = mapping.global_qconfig
    mapping.set_global(QConfig(activation=base.activation, weight=weight))
    return mapping


def prepare(
    fused: torch.nn.Module, engine: str, per_channel: bool, example: torch.Tensor
) -> torch.fx.GraphModule:
    from torch.ao.quantization.quantize_fx import prepare_fx

    with quiet_quantization_warnings():
        return prepare_fx(fused.eval(), qconfig_mapping(engine, per_channel), (example,))


def convert(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    from torch.ao.quantization.quantize_fx import convert_fx

    with quiet_quantization_warnings():
        return convert_fx(prepared)


@torch.no_grad()
def quantize_static(
    fused: torch.nn.Module,
    engine: str,
    per_channel: bool,
    calibration: torch.Tensor,
    batches: int,
    batch_size: int,
    log=print,
) -> tuple[torch.fx.GraphModule, int]:
    """Calibrate on ``batches`` batches of ``calibration`` and convert; returns (model, samples)."""
    with quantized_engine(engine):
        prepared = prepare(fused, engine, per_channel, calibration[:1])
        seen = 0
        for index in range(batches):
            chunk = calibration[index * batch_size : (index + 1) * batch_size]
            if len(chunk) == 0:
                log(f"calibration split exhausted after {index} batches ({seen} images)")
                break
            prepared(chunk)
            seen += len(chunk)
            log(f"calibration batch {index + 1}/{batches}: {seen} images")
        return convert(prepared), seen


def rebuild_quantized(
    fused: torch.nn.Module,
    engine: str,
    per_channel: bool,
    example: torch.Tensor,
    state_dict: dict[str, torch.Tensor],
) -> torch.fx.GraphModule:
    """Recreate a saved quantized model: same graph from the fused model, then its saved weights.

    Converting an uncalibrated prepared model yields the right structure with placeholder
    scales; ``load_state_dict`` then restores every quantized weight, scale and zero point.
    """
    with quantized_engine(engine):
        model = convert(prepare(fused, engine, per_channel, example))
        model.load_state_dict(state_dict)
    return model
