"""Magnitude pruning of an int8 model's weights, keeping its quantization parameters.

Pruning after quantization (the stage order of the brief) means choosing the smallest weights by
their real (dequantized) magnitude and setting their int8 value to the zero point, so the result
is exactly "the int8 model with those weights removed" and needs no recalibration.
"""

from __future__ import annotations

from typing import Any

import torch

METHODS = ("l1_unstructured",)  # int8-domain methods; channel pruning is mobileforge.prune.channel


def prunable_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    # Quantized conv/linear (and fused -ReLU) modules expose weight() and set_weight_bias().
    return [
        (name, module)
        for name, module in model.named_modules()
        if hasattr(module, "set_weight_bias") and callable(getattr(module, "weight", None))
    ]


def _requantize_like(weight: torch.Tensor, int_values: torch.Tensor) -> torch.Tensor:
    if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        return torch._make_per_channel_quantized_tensor(
            int_values,
            weight.q_per_channel_scales(),
            weight.q_per_channel_zero_points(),
            weight.q_per_channel_axis(),
        )
    return torch._make_per_tensor_quantized_tensor(
        int_values, weight.q_scale(), weight.q_zero_point()
    )


def _zero_points_like(weight: torch.Tensor) -> torch.Tensor:
    if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        shape = [1] * weight.dim()
        axis = weight.q_per_channel_axis()
        shape[axis] = -1
        return weight.q_per_channel_zero_points().view(shape).expand_as(weight.int_repr())
    return torch.full_like(weight.int_repr(), weight.q_zero_point())


def magnitude_order(magnitude: torch.Tensor) -> torch.Tensor:
    """Flat indices of ``magnitude`` from smallest to largest; ties broken by position (stable).

    A search that prunes one tensor at many amounts sorts it once and passes this to
    :func:`smallest_magnitude_mask`.
    """
    return torch.argsort(magnitude.flatten(), stable=True)


def smallest_magnitude_mask(
    magnitude: torch.Tensor, amount: float, order: torch.Tensor | None = None
) -> torch.Tensor:
    """True for the ``round(amount * numel)`` entries of smallest ``magnitude``.

    The count is ``torch.nn.utils.prune.L1Unstructured``'s; ties (common among int8 weights) are
    broken by position with a stable sort, so the choice is deterministic. Both the ``.ptl`` and
    the ``.pte`` pruning select weights with this. ``order``: ``magnitude_order(magnitude)``,
    if already known.
    """
    mask = torch.zeros(magnitude.numel(), dtype=torch.bool)
    count = round(amount * magnitude.numel())
    if count:
        mask[(magnitude_order(magnitude) if order is None else order)[:count]] = True
    return mask.view(magnitude.shape)


def _pruned_like(
    weight: torch.Tensor, amount: float, order: torch.Tensor | None = None
) -> tuple[torch.Tensor, int]:
    """``weight`` with its ``amount`` smallest (dequantized) entries at the zero point; zeros.

    ``order``: :func:`magnitude_order` of the dequantized magnitudes, if already known.
    """
    int_values = weight.int_repr().clone()
    zero_points = _zero_points_like(weight)
    smallest = smallest_magnitude_mask(weight.dequantize().abs(), amount, order)
    if smallest.any():
        int_values[smallest] = zero_points[smallest].to(int_values.dtype)
        weight = _requantize_like(weight, int_values)
    return weight, int((int_values == zero_points).sum())


class QuantizedLayers:
    """The prunable int8 layers of an FX model, pruned in place and back to their originals.

    ``apply(amounts)`` leaves every layer at its original weights pruned by ``amounts[name]``
    (0 for layers not named): calls are not cumulative, so a search can try many allocations on
    one model.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.modules = dict(prunable_layers(model))
        if not self.modules:
            raise ValueError("the model has no quantized conv/linear weights to prune")
        self.originals = {name: module.weight() for name, module in self.modules.items()}
        self.sizes = {name: weight.numel() for name, weight in self.originals.items()}
        self._orders: dict[str, torch.Tensor] = {}  # sorted once per layer, on first use
        self._touched: set[str] = set()

    @torch.no_grad()
    def apply(self, amounts: dict[str, float]) -> torch.nn.Module:
        for name in self._touched | set(amounts):
            module, original = self.modules[name], self.originals[name]
            if name not in self._orders:
                self._orders[name] = magnitude_order(original.dequantize().abs())
            weight, _ = _pruned_like(original, amounts.get(name, 0.0), self._orders[name])
            module.set_weight_bias(weight, module.bias())
        self._touched = {name for name, amount in amounts.items() if amount}
        return self.model


@torch.no_grad()
def prune_quantized(
    model: torch.nn.Module,
    amount: float,
    method: str,
    layer_amounts: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Zero the smallest-magnitude weights in every quantized layer, in place.

    Each layer loses ``layer_amounts[name]`` (0 where absent) when given, else ``amount``.
    Returns achieved sparsity (zero int8 weights / all int8 weights, counted after pruning,
    including weights that were already zero) and the per-layer figures.
    """
    if method not in METHODS:
        raise ValueError(f"prune method {method!r} is not one of {', '.join(METHODS)}")
    for value in [amount, *(layer_amounts or {}).values()]:
        if not 0 <= value < 1:
            raise ValueError(f"prune amount {value} is outside [0, 1)")
    layers: dict[str, float] = {}
    zeros = total = 0
    for name, module in prunable_layers(model):
        chosen = amount if layer_amounts is None else layer_amounts.get(name, 0.0)
        weight, layer_zeros = _pruned_like(module.weight(), chosen)
        module.set_weight_bias(weight, module.bias())
        layers[name] = layer_zeros / weight.numel()
        zeros += layer_zeros
        total += weight.numel()
    if not total:
        raise ValueError("the model has no quantized conv/linear weights to prune")
    return {"sparsity": zeros / total, "pruned_weights": total, "layers": layers}


def weight_sparsity(model: torch.nn.Module) -> float:
    """Share of int8 weights equal to their zero point, over all quantized layers."""
    zeros = total = 0
    for _, module in prunable_layers(model):
        weight = module.weight()
        zeros += int((weight.int_repr() == _zero_points_like(weight)).sum())
        total += weight.numel()
    return zeros / total if total else 0.0
