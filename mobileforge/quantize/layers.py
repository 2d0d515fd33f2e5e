"""The quantizable layers of a fused model, named as both quantizers name them.

A layer is a conv or linear module of the fused fp32 model, or a fused conv/linear(+relu) module
of ``torch.ao.nn.intrinsic`` as a whole (``features.1.conv.0``, not its ``.0`` child). Those
module names are what FX's ``QConfigMapping.set_module_name`` and PT2E's module-name filter
(which reads each node's ``nn_module_stack``) both take, so sensitivity, fp32 fallback and the
sidecars speak of the same layers in both formats.
"""

from __future__ import annotations

import torch
from torch import nn

_LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)


def _is_fused(module: nn.Module) -> bool:
    from torch.ao.nn.intrinsic import _FusedModule

    return isinstance(module, _FusedModule)


def quantizable_layers(model: nn.Module) -> dict[str, str]:
    """``{module name: type name}`` of every quantizable layer, in definition order."""
    layers: dict[str, str] = {}
    inside_fused: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in inside_fused):
            continue
        if _is_fused(module):
            inside_fused.append(name)
            layers[name] = type(module).__name__
        elif isinstance(module, _LAYER_TYPES):
            layers[name] = type(module).__name__
    return layers


def layer_weight(model: nn.Module, name: str) -> torch.nn.Parameter:
    """The weight of layer ``name`` (a fused module's weight is its first child's)."""
    module = model.get_submodule(name)
    if _is_fused(module):
        module = module[0]
    return module.weight


def linear_layers(model: nn.Module, fp32_layers: tuple[str, ...] = ()) -> list[str]:
    """The linear layers (``nn.Linear``, fused ``LinearReLU``) of ``quantizable_layers``, less
    ``fp32_layers``: those the dynamic int8 recipe quantizes at run time."""
    linear = {"Linear", "LinearReLU"}
    return [
        name
        for name, kind in quantizable_layers(model).items()
        if kind in linear and name not in fp32_layers
    ]
