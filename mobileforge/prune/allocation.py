"""Per-layer amounts for unstructured pruning, chosen by sensitivity, within an accuracy budget.

One amount for every layer (torch's ``l1_unstructured`` on each tensor) prunes a fragile
depthwise conv as hard as a redundant 1x1 conv; on MobileNetV2 x0.5 at 0.3 that cost 17 points
of top-1. Instead:

1. **Damage curves.** For each layer alone, its weights are pruned at each amount of ``GRID``
   in the int8 model and the logit SQNR against the unpruned int8 model measured on a few
   calibration images.
2. **Allocation.** Starting from nothing pruned, the layer whose next step on the grid adds the
   least logit noise per removed weight takes that step, until the requested share of all
   weights is removed (noise powers of separate layers are taken to add up).
3. **Budget.** The real pruned model is scored on the whole calibration split. If its loss
   against fp32 exceeds ``selection.accuracy_budget``, the overall amount is halved towards the
   largest one that fits (bisection, a few full passes): the artifact keeps as many zeros as
   the budget allows. If not even the smallest amount tried fits, the requested amount is kept
   and the record says that no amount is within the budget.

The same module serves the ``.ptl`` (FX int8 modules) and ``.pte`` (PT2E graph) paths through a
:class:`Target`: what can be pruned, how to prune it, how to score the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover - typing only
    from mobileforge.quantize.budget import Control

GRID = (0.2, 0.4, 0.6, 0.8, 0.9)
BISECTION_STEPS = 5
#: Calibration images each per-layer pruning damage is measured on (ranking only; the budget
#: is checked on the whole calibration split).
PROBE_IMAGES = 64


@dataclass
class Target:
    """A pruning target: layer sizes and three callables over per-layer amounts.

    ``prune(amounts)`` returns the model pruned by exactly ``amounts`` (not cumulatively: see
    :class:`mobileforge.prune.unstructured.QuantizedLayers`); ``logits(model, images)`` runs it;
    ``loss(model)`` is its loss against fp32 on the calibration split
    (:func:`mobileforge.quantize.budget.measure`).
    """

    sizes: dict[str, int]
    prune: Callable[[dict[str, float]], Any]
    logits: Callable[[Any, torch.Tensor], torch.Tensor]
    loss: Callable[[Any], dict[str, Any]]


def _noise(reference: torch.Tensor, pruned: torch.Tensor) -> float:
    """Noise-to-signal power of the logits (0 when identical)."""
    signal = float(reference.double().pow(2).sum())
    return float((reference - pruned).double().pow(2).sum()) / signal if signal else math.inf


def damage_curves(
    target: Target, probe: torch.Tensor, log: Callable[[str], Any] | None = None
) -> dict[str, dict[float, float]]:
    """``{layer: {amount: logit noise-to-signal}}`` with only that layer pruned."""
    reference = target.logits(target.prune({}), probe)
    curves: dict[str, dict[float, float]] = {}
    for index, layer in enumerate(target.sizes, start=1):
        curves[layer] = {
            amount: _noise(reference, target.logits(target.prune({layer: amount}), probe))
            for amount in GRID
        }
        if log and (index % 10 == 0 or index == len(target.sizes)):
            log(f"prune sensitivity: {index}/{len(target.sizes)} layers")
    return curves


def allocate(
    curves: dict[str, dict[float, float]], sizes: dict[str, int], amount: float
) -> dict[str, float]:
    """Per-layer amounts removing ``amount`` of all weights with the least summed noise."""
    total = sum(sizes.values())
    chosen = dict.fromkeys(sizes, 0.0)
    removed = 0.0
    while removed < amount * total - 1e-9:
        best, best_cost = None, math.inf
        for layer, current in chosen.items():
            steps = [a for a in GRID if a > current]
            if not steps:
                continue
            step = steps[0]
            before = curves[layer].get(current, 0.0) if current else 0.0
            cost = (curves[layer][step] - before) / ((step - current) * sizes[layer])
            if cost < best_cost:
                best, best_cost = layer, cost
        if best is None:  # every layer at the grid's end
            break
        step = next(a for a in GRID if a > chosen[best])
        removed += (step - chosen[best]) * sizes[best]
        chosen[best] = step
    return {layer: value for layer, value in chosen.items() if value}


def fit_budget(
    target: Target,
    curves: dict[str, dict[float, float]],
    amount: float,
    budget: float,
    log: Callable[[str], Any] = print,
) -> tuple[Any, dict[str, Any]]:
    """The pruned model at the largest overall amount <= ``amount`` within ``budget``."""
    steps: list[dict[str, Any]] = []
    built: dict[float, dict[str, float]] = {}

    def attempt(overall: float) -> dict[str, Any]:
        amounts = allocate(curves, target.sizes, overall)
        model = target.prune(amounts)
        built[overall] = amounts
        step = {"amount": overall, **target.loss(model)}
        steps.append(step)
        log(f"l1_unstructured at {overall:.4g} overall: loss {step['loss']:.2f} points")
        return step

    first = attempt(amount)
    if first["loss"] <= budget:
        chosen, reason = amount, f"loss {first['loss']:.2f} is within the budget of {budget}"
    else:
        low, high, chosen = 0.0, amount, None
        for _ in range(BISECTION_STEPS):
            middle = (low + high) / 2
            if attempt(middle)["loss"] <= budget:
                low, chosen = middle, middle
            else:
                high = middle
        if chosen is None:
            chosen = amount
            reason = (
                f"no amount within the budget of {budget}: the requested {amount} lost "
                f"{first['loss']:.2f} points and even {high:.4g} lost more than {budget}"
            )
        else:
            reason = (
                f"the requested {amount} lost {first['loss']:.2f} points, over the budget of "
                f"{budget}; {chosen:.4g} is the largest amount tried within it"
            )
    log(reason)
    amounts = built[chosen]
    model = target.prune(amounts)  # the target is pruned in place: set it to the choice again
    record = {
        "requested_amount": amount,
        "amount": chosen,
        "within_budget": any(s["amount"] == chosen and s["loss"] <= budget for s in steps),
        "accuracy_budget": budget,
        "reason": reason,
        "layer_amounts": amounts,
        "grid": list(GRID),
        "steps": steps,
    }
    return model, record


def prune_within_budget(
    layers: Any,
    control: Control,
    amount: float,
    budget: float,
    log: Callable[[str], Any] = print,
) -> tuple[Any, dict[str, Any]]:
    """``layers`` (``sizes`` and ``apply(amounts)``: :class:`mobileforge.prune.unstructured.
    QuantizedLayers` or :class:`mobileforge.prune.pt2e.ConvertedLayers`) pruned by per-layer l1
    amounts from their damage curves, at the largest overall amount <= ``amount`` whose loss
    against fp32 on the control images is within ``budget``."""
    target = Target(sizes=layers.sizes, prune=layers.apply, logits=control.logits,
                    loss=control.loss)  # fmt: skip
    curves = damage_curves(target, control.images[:PROBE_IMAGES], log)
    return fit_budget(target, curves, amount, budget, log)
