"""The int8 accuracy budget: keep the most sensitive layers in fp32 until int8 is close enough.

After calibration the real converted int8 model (not a simulation) is run on the control images
(the whole calibration split: never the eval split) beside the fp32 model. Its loss is

* with labels: fp32 top-1 minus int8 top-1, in points;
* without (a user's unlabelled calib split): the share of images whose top-1 class changed, an
  upper bound on any top-1 loss.

While the loss is above ``quantize.accuracy_budget`` and fewer than ``quantize.max_fp32_layers``
layers are kept, the next layer in sensitivity order (most damaging first) is tried in fp32: the
model is re-quantized and re-measured, and the layer stays fp32 only if that lowered the loss.
One that did not goes back to int8 (the ranking is a simulation; the real kernels may disagree,
and every fp32 layer costs latency: on an AVX2 x86 host three fp32 layers cost MobileNetV2 ×0.5's
``.ptl`` 16-23 % in two paired measurements, while the first of them had changed one image of
2,048). At most twice
``max_fp32_layers`` layers are tried. If the budget is still not met, the most accurate model
found is kept and the record says so. Every step is recorded, with whether its layer was kept,
so a user sees what each fp32 layer bought.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mobileforge.quantize.recipe import Recipe
from mobileforge.runtime.evaluate import collect_logits

#: Images per forward when a budget runs a model on the control images.
BATCH_SIZE = 256


@dataclass(frozen=True)
class Control:
    """What a budget measures a quantized (or pruned) model on: the calibration split's images,
    their labels (None for a user's unlabelled split) and the fp32 model's logits on them."""

    images: torch.Tensor
    labels: torch.Tensor | None
    fp32_logits: torch.Tensor

    @classmethod
    def of(cls, fp32_model: Any, images: torch.Tensor, labels: torch.Tensor | None) -> Control:
        return cls(images, labels, collect_logits(fp32_model, images, batch_size=BATCH_SIZE))

    def logits(self, model: Any, images: torch.Tensor | None = None) -> torch.Tensor:
        """``model``'s logits on the control images (or on ``images``)."""
        return collect_logits(model, self.images if images is None else images, BATCH_SIZE)

    def loss(self, model: Any) -> dict[str, Any]:
        """:func:`measure` of ``model`` against fp32 on the control images."""
        return measure(self.fp32_logits, self.logits(model), self.labels)


@dataclass
class Int8Choice:
    """The int8 model a budget kept and how: what its stage records."""

    model: Any
    recipe: Recipe  # with the fp32 layers the budget kept
    budget: dict[str, Any]  # :func:`keep_within_budget`'s record
    calibration: dict[str, Any]  # what calibrating the kept model saw, for the sidecar
    reduce_range_choice: dict[str, Any] | None = None  # ``reduce_range: auto``'s record


def _top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).double().mean() * 100)


def measure(
    fp32_logits: torch.Tensor, int8_logits: torch.Tensor, labels: torch.Tensor | None
) -> dict[str, Any]:
    """Loss of int8 against fp32 on the control images, with its standard error."""
    n = len(int8_logits)
    agreement = _top1(int8_logits, fp32_logits.argmax(1))
    record: dict[str, Any] = {"n": n, "top1_agreement": agreement}
    if labels is None:
        record["loss"] = 100.0 - agreement
        return record
    fp32_right = fp32_logits.argmax(1) == labels
    int8_right = int8_logits.argmax(1) == labels
    lost = int((fp32_right & ~int8_right).sum())
    gained = int((~fp32_right & int8_right).sum())
    record.update(
        fp32_accuracy=_top1(fp32_logits, labels),
        accuracy=_top1(int8_logits, labels),
        loss=100.0 * (lost - gained) / n,
        # Paired standard error of the accuracy difference (only discordant images vary).
        loss_stderr=100.0 * math.sqrt(max(0.0, lost + gained - (lost - gained) ** 2 / n)) / n,
    )
    return record


def criterion(labels: torch.Tensor | None) -> str:
    if labels is None:
        return "top-1 disagreement with fp32 on the calibration split (no labels)"
    return "top-1 points lost against fp32 on the calibration split"


def choose_reduce_range(
    quantize: Callable[[bool], Any],
    logits_of: Callable[[Any], torch.Tensor],
    fp32_logits: torch.Tensor,
    labels: torch.Tensor | None,
    log: Callable[[str], Any] = print,
) -> tuple[bool, dict[str, Any], tuple[Any, torch.Tensor]]:
    """``quantize.reduce_range: auto``: all-int8 with 8-bit and with 7-bit activations, scored
    as the budget scores them; the lower loss wins (8-bit on ties).

    Neither is right on every CPU. Without VNNI, fbgemm (the x86 engine) sums u8 x s8 pairs
    in saturating 16-bit registers and 8-bit activations can overflow them: on an AVX2 AMD EPYC
    the default tinycnn lost 2.59 points on the calibration split with 8 bits and 0.44 with 7.
    On the same CPU ResNet-18 lost 0.39 with 8 bits and 3.12 with 7, whose coarser steps cost
    more than any overflow. ``quantize(reduce_range)`` returns a converted all-int8 model.
    Returns the choice, its record, and the chosen model with its logits (the budget's first
    step: :func:`keep_within_budget` ``first``).
    """
    steps, built = {}, {}
    for reduce_range in (False, True):
        model = quantize(reduce_range)
        built[reduce_range] = (model, logits_of(model))
        steps[reduce_range] = measure(fp32_logits, built[reduce_range][1], labels)
        log(f"reduce_range {reduce_range}: all-int8 loss {steps[reduce_range]['loss']:.2f} points")
    chosen = steps[True]["loss"] < steps[False]["loss"]
    reason = (
        f"auto: all-int8 lost {steps[False]['loss']:.2f} points with 8-bit activations and "
        f"{steps[True]['loss']:.2f} with 7-bit; kept {'7' if chosen else '8'}-bit"
    )
    log(reason)
    record = {"chosen": chosen, "reason": reason, "8-bit": steps[False], "7-bit": steps[True]}
    return chosen, record, built[chosen]


def keep_within_budget(
    quantize: Callable[[tuple[str, ...]], Any],
    logits_of: Callable[[Any], torch.Tensor],
    fp32_logits: torch.Tensor,
    labels: torch.Tensor | None,
    ranking: list[str],
    budget: float | None,
    max_fp32_layers: int,
    log: Callable[[str], Any] = print,
    first: tuple[Any, torch.Tensor] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Quantize, then keep layers of ``ranking`` in fp32 until the loss is within ``budget``.

    ``quantize(fp32_layers)`` returns a converted model; ``logits_of(model)`` its logits on the
    control images, whose fp32 logits and labels (or None) are given. ``first``: the all-int8
    model and its logits where the caller has them already. Returns the chosen model and the
    record for the sidecar. ``budget`` None quantizes every layer and only measures.
    """
    steps: list[dict[str, Any]] = []

    def attempt(
        fp32_layers: tuple[str, ...], built: tuple[Any, torch.Tensor] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if built is None:
            model = quantize(fp32_layers)
            built = (model, logits_of(model))
        model, logits = built
        step = {"fp32_layers": list(fp32_layers), **measure(fp32_logits, logits, labels)}
        steps.append(step)
        log(
            f"int8 with {len(fp32_layers)} fp32 layer(s) {list(fp32_layers)}: loss "
            f"{step['loss']:.2f} points (top-1 agreement {step['top1_agreement']:.2f}%, "
            f"{step['n']} images)"
        )
        return model, step

    best_model, chosen = attempt((), first)
    chosen["kept"] = True
    candidates = iter(ranking[: 2 * max_fp32_layers])
    while budget is not None and chosen["loss"] > budget:
        layer = next(candidates, None)
        if layer is None or len(chosen["fp32_layers"]) >= max_fp32_layers:
            break
        model, step = attempt((*chosen["fp32_layers"], layer))
        step["kept"] = step["loss"] < chosen["loss"]  # a layer stays fp32 only if it paid
        if step["kept"]:
            best_model, chosen = model, step
        else:
            log(f"{layer} in fp32 did not lower the loss: back to int8")
    met = budget is None or chosen["loss"] <= budget
    returned = sum(1 for step in steps if not step["kept"])
    if budget is None:
        reason = "no accuracy budget (quantize.accuracy_budget is null): every layer int8"
    elif met and not chosen["fp32_layers"]:
        reason = f"all-int8 loss {chosen['loss']:.2f} is within the budget of {budget}"
    elif met:
        reason = (
            f"all-int8 lost {steps[0]['loss']:.2f} points, over the budget of {budget}; keeping "
            f"{len(chosen['fp32_layers'])} sensitive layer(s) in fp32 brings it to "
            f"{chosen['loss']:.2f}"
        )
    else:
        reason = (
            f"budget of {budget} not met: all-int8 lost {steps[0]['loss']:.2f} points and "
            f"{len(chosen['fp32_layers'])} fp32 layer(s) (quantize.max_fp32_layers "
            f"{max_fp32_layers}, {len(steps) - 1} tried) got it down to {chosen['loss']:.2f} "
            "at best; raise max_fp32_layers or the budget"
        )
    if returned:
        reason += f" ({returned} tried layer(s) that did not lower the loss went back to int8)"
    log(reason)
    record = {
        "accuracy_budget": budget,
        "max_fp32_layers": max_fp32_layers,
        "criterion": criterion(labels),
        "budget_met": met,
        "fp32_layers": chosen["fp32_layers"],
        "reason": reason,
        "loss": chosen["loss"],
        "steps": steps,
    }
    return best_model, record
