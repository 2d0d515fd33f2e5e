"""Post-training static int8 quantization (FX graph mode), per kernel library ("engine").

The engine decides how packed weights are laid out (and, with ``reduce_range``, x86 keeps
activations to 7 bits so fbgemm's vpmaddubsw kernels cannot overflow on CPUs without VNNI), so
calibration and the saved model are per engine.
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


def qconfig_mapping(engine: str, per_channel: bool, reduce_range: bool = False):  # QConfigMapping
    """The engine's default mapping, with the weight and activation observers asked for.

    ``reduce_range`` keeps activations to 7 bits, PyTorch's x86 default, which avoids overflow in
    fbgemm's kernels on x86 CPUs without VNNI; with full 8 bits int8 stays within a point of fp32
    on the default models (7-bit: up to 1.8 points lower). QNNPACK always uses 8 bits.
    """
    from torch.ao.quantization import QConfig, QConfigMapping, get_default_qconfig_mapping
    from torch.ao.quantization.observer import (
        HistogramObserver,
        default_per_channel_weight_observer,
        default_weight_observer,
    )

    mapping: QConfigMapping = get_default_qconfig_mapping(engine)
    weight = default_per_channel_weight_observer if per_channel else default_weight_observer
    activation = HistogramObserver.with_args(reduce_range=reduce_range and engine != "qnnpack")
    mapping.set_global(QConfig(activation=activation, weight=weight))
    return mapping


def prepare(
    fused: torch.nn.Module,
    engine: str,
    per_channel: bool,
    example: torch.Tensor,
    reduce_range: bool = False,
) -> torch.fx.GraphModule:
    from torch.ao.quantization.quantize_fx import prepare_fx

    mapping = qconfig_mapping(engine, per_channel, reduce_range)
    with quiet_quantization_warnings():
        return prepare_fx(fused.eval(), mapping, (example,))


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
    reduce_range: bool = False,
) -> tuple[torch.fx.GraphModule, int]:
    """Calibrate on ``batches`` batches of ``calibration`` and convert; returns (model, samples)."""
    with quantized_engine(engine):
        prepared = prepare(fused, engine, per_channel, calibration[:1], reduce_range)
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
