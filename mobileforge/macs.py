"""Multiply-accumulates (MACs) of one inference, counted from the model itself.

Counted by PyTorch's own ``FlopCounterMode`` while the float model runs once on a zero input of
the artifact's shape: convolutions (depthwise and grouped ones at their real cost,
``out_elements * in_channels / groups * kernel``), linear layers and matrix products. Element-wise
ops, pooling and activations are not counted, as in the published figures (MobileNetV2 1.0 at
224: 300.8 M; ResNet-18: 1.81 G). A FLOP there is one multiply or one add, so MACs = FLOPs / 2.
Quantized modules do not report to the counter: count the float model an int8 one came from.

:func:`macs_by_kind` splits the count by the kind of layer that does the work (``conv``,
``linear``: linear layers and matrix products, ``other``: attention kernels), which is what
``quantize.mode: auto`` reads to decide whether a dynamic int8 recipe is worth building.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: Kinds of layer :func:`macs_by_kind` reports, in order.
KINDS = ("conv", "linear", "other")
#: The counter's operators (by name) of each kind; any other counted operator is ``other``.
_LINEAR_OPS = ("mm", "addmm", "bmm", "baddbmm", "_scaled_mm")


def _kind(op: str) -> str:
    name = op.removeprefix("aten.")
    if "conv" in name:  # convolution, _convolution, cudnn_convolution, _slow_conv2d_forward
        return "conv"
    return "linear" if name in _LINEAR_OPS else "other"


def _flop_counts(model: torch.nn.Module, input_shape: Sequence[int]) -> dict[str, dict]:
    """FlopCounterMode's FLOPs by module (``Global``: the whole run), then by operator."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(list(input_shape)))
    finally:
        model.train(was_training)
    return counter.get_flop_counts()


def macs_by_kind(model: torch.nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """MACs of one forward pass of ``model`` on an input of ``input_shape`` (batch included),
    by kind of layer (:data:`KINDS`); they add up to :func:`count_macs`."""
    found = dict.fromkeys(KINDS, 0)
    for op, flops in _flop_counts(model, input_shape).get("Global", {}).items():
        found[_kind(str(op))] += int(flops) // 2
    return found


def count_macs(model: torch.nn.Module, input_shape: Sequence[int]) -> int:
    """MACs of one forward pass of ``model`` on an input of ``input_shape`` (batch included)."""
    return sum(macs_by_kind(model, input_shape).values())


def module_macs(model: torch.nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """MACs of one forward pass inside each module of ``model``, by its ``named_modules`` name
    (a module's count holds its submodules'; the whole model is ``""``), counted as
    :func:`count_macs` counts: modules that run no counted op are left out."""
    result: dict[str, int] = {}
    for key, by_op in _flop_counts(model, input_shape).items():
        if key == "Global":
            continue
        # the tracker names a module "<root class>.<name in named_modules>"
        _, _, name = key.partition(".")
        result[name] = sum(int(flops) // 2 for flops in by_op.values())
    return result
