"""Multiply-accumulates (MACs) of one inference, counted from the model itself.

Counted by PyTorch's own ``FlopCounterMode`` while the float model runs once on a zero input of
the artifact's shape: convolutions (depthwise and grouped ones at their real cost,
``out_elements * in_channels / groups * kernel``), linear layers and matrix products. Element-wise
ops, pooling and activations are not counted, as in the published figures (MobileNetV2 1.0 at
224: 300.8 M; ResNet-18: 1.81 G). A FLOP there is one multiply or one add, so MACs = FLOPs / 2.
Quantized modules do not report to the counter: count the float model an int8 one came from.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def count_macs(model: torch.nn.Module, input_shape: Sequence[int]) -> int:
    """MACs of one forward pass of ``model`` on an input of ``input_shape`` (batch included)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(list(input_shape)))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2


def module_macs(model: torch.nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """MACs of one forward pass inside each module of ``model``, by its ``named_modules`` name
    (a module's count holds its submodules'; the whole model is ``""``), counted as
    :func:`count_macs` counts: modules that run no counted op are left out."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(list(input_shape)))
    finally:
        model.train(was_training)
    result: dict[str, int] = {}
    for key, by_op in counter.get_flop_counts().items():
        if key == "Global":
            continue
        # the tracker names a module "<root class>.<name in named_modules>"
        _, _, name = key.partition(".")
        result[name] = int(sum(by_op.values())) // 2
    return result
