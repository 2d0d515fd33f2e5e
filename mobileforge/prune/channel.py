"""Structured channel pruning of an fp32 model with Torch-Pruning.

The stage prunes the trained model with its BatchNorm layers (they re-normalise the thinner
activations while it fine-tunes) and saves it fused; :func:`resize` rebuilds either form.

Whole output channels of conv/linear layers are removed, so the pruned model has physically
smaller layers: fewer multiply-accumulates, smaller weights, real speed on dense kernels.
Torch-Pruning's dependency graph removes the matching input channels of every consumer and keeps
residual adds, concatenations and depthwise groups consistent, which is what lets user models
through. Channels are ranked by the L2 norm of their group's weights
(``GroupMagnitudeImportance``), per layer (``scope: layer``: each layer loses ``amount`` of its
channels) or across layers (``scope: global``). The first layer (its outputs feed everything,
its inputs are the image) and the classifier's outputs are never pruned.

A pruned model is saved as the state_dict plus its structure (:func:`pruned_structure`: the new
channel counts of every resized module and the shape of every tensor) and rebuilt from the
architecture by :func:`resize` before loading the weights: nothing is unpickled but tensors and
numbers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mobileforge.macs import count_macs

#: Integer attributes Torch-Pruning rewrites when it resizes a module, by module type.
_SHAPE_ATTRIBUTES: tuple[tuple[type, tuple[str, ...]], ...] = (
    (nn.modules.conv._ConvNd, ("in_channels", "out_channels", "groups")),
    (nn.Linear, ("in_features", "out_features")),
    (nn.modules.batchnorm._BatchNorm, ("num_features",)),
    (nn.GroupNorm, ("num_channels",)),
    (nn.PReLU, ("num_parameters",)),
)


def _shape_attributes(module: nn.Module) -> tuple[str, ...]:
    for kind, attributes in _SHAPE_ATTRIBUTES:
        if isinstance(module, kind):
            return attributes
    return ()


def channel_counts(model: nn.Module) -> dict[str, dict[str, int]]:
    """``{module: {attribute: value}}`` of every module whose shape attributes exist."""
    counts = {}
    for name, module in model.named_modules():
        attributes = _shape_attributes(module)
        if attributes:
            counts[name] = {attr: int(getattr(module, attr)) for attr in attributes}
    return counts


def tensor_shapes(model: nn.Module) -> dict[str, list[int]]:
    """Shape of every parameter and buffer, by state_dict key."""
    return {key: list(value.shape) for key, value in model.state_dict().items()}


def pruned_structure(model: nn.Module) -> dict[str, Any]:
    """What a pruned model's stage records to be rebuilt: channel counts and tensor shapes."""
    return {"counts": channel_counts(model), "shapes": tensor_shapes(model)}


def resize(model: nn.Module, structure: dict[str, Any]) -> nn.Module:
    """Give ``model`` (the unpruned architecture) the pruned structure, in place.

    Shape attributes come from ``structure["counts"]``; every parameter and buffer gets an
    empty tensor of its recorded shape, which ``load_state_dict`` (or quantization) then fills.
    """
    for name, attributes in structure["counts"].items():
        module = model.get_submodule(name)
        for attr, value in attributes.items():
            setattr(module, attr, value)
    with torch.no_grad():
        for key, shape in structure["shapes"].items():
            owner_name, _, leaf = key.rpartition(".")
            owner = model.get_submodule(owner_name) if owner_name else model
            current = getattr(owner, leaf, None)
            if not isinstance(current, torch.Tensor) or list(current.shape) == list(shape):
                continue
            empty = torch.empty(shape, dtype=current.dtype)
            if isinstance(current, nn.Parameter):
                setattr(owner, leaf, nn.Parameter(empty, requires_grad=current.requires_grad))
            else:
                owner.register_buffer(leaf, empty)
    return model


def _layers_in_call_order(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """Conv and linear modules in the order one forward pass calls them."""
    order: list[nn.Module] = []
    hooks = [
        module.register_forward_hook(lambda m, *_: order.append(m))
        for module in model.modules()
        if isinstance(module, nn.modules.conv._ConvNd | nn.Linear)
    ]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return list(dict.fromkeys(order))


def prune_channels(
    model: nn.Module,
    example: torch.Tensor,
    amount: float,
    scope: str = "layer",
    round_to: int | None = None,
    log: Callable[[str], Any] = print,
    steps: int = 1,
    between: Callable[[int], Any] | None = None,
) -> dict[str, Any]:
    """Remove ``amount`` of the channels of ``model`` in place; returns the record for sidecars.

    ``round_to``: each pruned layer keeps a multiple of this many channels (Torch-Pruning rounds
    the kept count down, and leaves a layer alone that would keep none). Int8 conv kernels want
    it: on x86 a MobileNetV2 pruned to arbitrary channel counts ran 10-16x slower as a ``.ptl``.

    ``steps`` > 1 prunes gradually (Torch-Pruning's ``iterative_steps``): its linear schedule
    has step ``k`` remove ``k / steps * amount`` of each layer's *initial* channels, ranking the
    channels left by their weights as they are then, and ``between(k)`` runs after every step
    but the last (the recovery fine-tune between them). With ``scope: layer`` the last step
    ends at the channel counts of one step (the target is counted from the initial channels
    and rounded the same way); which channels go may differ, since the weights moved. One
    exception had to be closed: a layer whose one-step count rounds to none is left whole, but
    an earlier step's smaller share could have cut it (16 channels at 0.7 and ``round_to`` 8:
    one step keeps 16, a first step of three would cut to 8); so the layers one step leaves
    whole (found by pruning a copy in one step) are left whole by every step. The record's
    ``steps`` lists each step's target share, MACs and parameters.
    """
    import torch_pruning as tp

    if not 0 <= amount < 1:
        raise ValueError(f"prune.amount {amount} is outside [0, 1)")
    if scope not in ("layer", "global"):
        raise ValueError(f"prune.scope must be 'layer' or 'global', got {scope!r}")
    if round_to is not None and round_to < 1:
        raise ValueError(f"prune.round_to must be a positive integer or null, got {round_to!r}")
    if steps < 1:
        raise ValueError(f"prune.steps must be a positive integer, got {steps!r}")
    model.eval()
    layers = _layers_in_call_order(model, example)
    if len(layers) < 2:
        raise ValueError("channel pruning needs at least two conv/linear layers")
    kept = [layers[0], layers[-1]]  # first layer and classifier outputs
    before = {"macs": count_macs(model, example.shape), "params": parameter_count(model)}
    whole = _left_whole(model, example, amount, scope, round_to) if steps > 1 else []
    pruner = tp.pruner.BasePruner(
        model,
        example,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=amount,
        global_pruning=scope == "global",
        ignored_layers=kept + whole,
        round_to=round_to,
        iterative_steps=steps,
    )
    done: list[dict[str, Any]] = []
    for step in range(1, steps + 1):
        try:
            model.eval()
            pruner.step()
            after = {"macs": count_macs(model, example.shape), "params": parameter_count(model)}
        except (RuntimeError, IndexError) as error:
            # Torch-Pruning follows channels through convs and linears, not through a reshape
            # that splits them into attention heads: it cuts q/k/v alone and the model stops
            # running.
            raise ValueError(
                f"channel pruning broke this model ({type(error).__name__}: {error}); models "
                "whose channels are split into groups by a reshape (attention heads) cannot be "
                "channel-pruned yet: set prune.method: l1_unstructured for this model"
            ) from error
        share = float(pruner.per_step_pruning_ratio[step])
        done.append({"step": step, "amount": share, **after})
        log(
            f"channel pruning {amount} ({scope}, round_to {round_to}), step {step}/{steps} "
            f"(target {share:.4g}): MACs {before['macs']:,} -> {after['macs']:,}, "
            f"parameters {before['params']:,} -> {after['params']:,}"
        )
        if step < steps and between is not None:
            between(step)
    return {
        "method": "channel",
        "amount": amount,
        "scope": scope,
        "round_to": round_to,
        "importance": "torch_pruning.importance.GroupMagnitudeImportance(p=2)",
        "kept_layers": [_name_of(model, layer) for layer in kept],
        "before": before,
        "after": after,
        "steps": done,
    }


def _out_channels(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def _left_whole(
    model: nn.Module, example: torch.Tensor, amount: float, scope: str, round_to: int | None
) -> list[nn.Module]:
    """The conv and linear layers of ``model`` whose outputs one-step pruning leaves whole
    (pruning a copy to see)."""
    one_step = copy.deepcopy(model)
    prune_channels(one_step, example, amount, scope, round_to, log=lambda _: None)
    return [
        module
        for module in _layers_in_call_order(model, example)
        if _out_channels(module) == _out_channels(one_step.get_submodule(_name_of(model, module)))
    ]


def parameter_count(model: nn.Module) -> int:
    """Number of parameters (weights and biases) of ``model``."""
    return sum(p.numel() for p in model.parameters())


def _name_of(model: nn.Module, target: nn.Module) -> str:
    return next(name for name, module in model.named_modules() if module is target)
