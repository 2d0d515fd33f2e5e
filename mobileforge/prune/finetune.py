"""A channel-pruned model that recovers: channels removed (in one step or several), fine-tuned
distilled from the unpruned model until it is within the accuracy budget, then fused.

Pruned before fusion: with its BatchNorm layers the pruned network re-normalises its thinner
activations while it fine-tunes. A BN-folded MobileNetV2 1.0 pruned at 0.6 has lost its signal
(outputs at a tenth of their scale, chance accuracy) and three epochs of fine-tuning left it at
chance; the same model pruned with its BN layers was at 67 % after 30 steps.

Recovery to the budget: ``prune.finetune.epochs`` is a ceiling. After every epoch the pruned
model is scored on the held-back part of the train split (:mod:`mobileforge.data.holdout`),
which the unpruned model did not train on either; the fine-tune stops once that score is within
``selection.accuracy_budget - prune.finetune.int8_margin`` points of the unpruned model's (the
margin is the room left for int8), or after ``patience`` epochs without a better score, or at
the ceiling, and keeps its best epoch's weights (the earlier epoch of a tie).

The learning rate follows the warm-up and cosine of the whole ceiling, not of the epochs used:
the schedule never depends on when the run stops, so the weights of epoch k are the same in a
run that stops there and in one that goes on (today's fixed-epoch fine-tune is the run that
never stops early), and an epoch is never trained at a rate chosen after looking at the
held-back score. The cost: a run that stops early stops at a learning rate above zero, whose
weights a decay to zero would have polished; the held-back score says whether they are good
enough, which is the question asked.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mobileforge import train as training
from mobileforge.fuse import fuse
from mobileforge.prune.channel import parameter_count, prune_channels

#: Why a recovery fine-tune stopped (the record's ``stopped``).
STOP_REASONS = ("within_budget", "patience", "ceiling")


def prune_and_finetune(
    model: nn.Module,
    example: torch.Tensor,
    data: dict[str, Any],
    settings: dict[str, Any],
    log: Callable[[str], Any] = print,
) -> tuple[nn.Module, dict[str, Any]]:
    """Prune ``model`` (in place) by ``settings`` (the model's ``prune`` config: ``amount``,
    ``scope``, ``round_to``, ``steps``, ``finetune``, ``train``, and the ``accuracy_budget``
    of the selection), fine-tune it on ``data``'s train split until within budget on its
    held-back part (``holdout_x``/``holdout_y``, :func:`mobileforge.data.holdout.split_holdout`),
    fuse it.

    Returns the fused pruned model and the pruning record
    (:class:`mobileforge.records.ChannelPruneRecord`): channels and MACs before and after,
    each step's MACs, parameters of the fused models, the fine-tune's settings and its
    recovery curve with why it stopped.
    """
    teacher = copy.deepcopy(model).eval()
    finetune = settings["finetune"]
    holdout_x, holdout_y = data["holdout_x"], data["holdout_y"]
    reference = (
        training.evaluate_accuracy(teacher, holdout_x, holdout_y) if len(holdout_y) else None
    )
    curve: list[dict[str, Any]] = []

    def between(step: int) -> None:  # after each step but the last: a short recovery
        if finetune["step_epochs"] > 0:
            log(f"step {step}: fine-tuning {finetune['step_epochs']} epoch(s) before the next")
            history = _finetune(model, teacher, data, settings, finetune["step_epochs"], step, log)
            curve.extend(_curve(history["epochs"], step))

    start = time.perf_counter()
    record = prune_channels(
        model,
        example,
        settings["amount"],
        settings["scope"],
        settings["round_to"],
        log,
        steps=settings["steps"],
        between=between,
    )
    recovery = recover_to_budget(model, teacher, data, settings, reference, log)
    recovery["history"] = curve + recovery["history"]
    recovery["seconds"] = time.perf_counter() - start
    record["finetune"] = dict(finetune)
    record["recovery"] = recovery
    fused = fuse(model)
    # Parameters as the int8 and export stages see them: of the fused models, BN folded.
    record["before"]["params"] = parameter_count(fuse(teacher))
    record["after"]["params"] = parameter_count(fused)
    return fused, record


def recover_to_budget(
    model: nn.Module,
    teacher: nn.Module,
    data: dict[str, Any],
    settings: dict[str, Any],
    reference: float | None,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Fine-tune the pruned ``model`` (in place) after its last pruning step: at most
    ``finetune.epochs`` epochs, stopping once its held-back top-1 reaches the target
    (``reference - (accuracy_budget - int8_margin)``), after ``patience`` epochs without a
    better score, or at the ceiling; the model ends with its best epoch's weights.

    Without a held-back part (``reference`` None) it runs the ceiling and keeps the last epoch.
    Returns the :class:`mobileforge.records.Recovery` record (history of this last step only,
    ``seconds`` left to the caller).
    """
    finetune, step = settings["finetune"], settings["steps"]
    allowance = max(0.0, settings["accuracy_budget"] - finetune["int8_margin"])
    target = None if reference is None else reference - allowance
    best: dict[str, Any] = {"acc": -math.inf, "epoch": None, "state": None}
    stopped = {"reason": "ceiling"}

    def after_epoch(epoch: dict[str, Any]) -> bool:
        score = epoch["holdout_acc"]
        if target is None or math.isnan(score):
            return False
        if score > best["acc"]:  # strictly: a tie keeps the earlier epoch
            state = {key: value.detach().clone() for key, value in model.state_dict().items()}
            best.update(acc=score, epoch=epoch["epoch"], state=state)
        if score >= target:
            stopped["reason"] = "within_budget"
            return True
        if epoch["epoch"] - best["epoch"] >= finetune["patience"]:
            stopped["reason"] = "patience"
            return True
        return False

    history: list[dict[str, Any]] = []
    if finetune["epochs"] > 0:
        history = _finetune(
            model, teacher, data, settings, finetune["epochs"], step, log, after_epoch
        )["epochs"]
    used = len(history)
    if best["state"] is not None and best["epoch"] != used:
        model.load_state_dict(best["state"])
    best_epoch = best["epoch"] if best["epoch"] is not None else (used or None)
    record = {
        "holdout_images": len(data["holdout_y"]),
        "reference_holdout_acc": reference,
        "accuracy_budget": settings["accuracy_budget"],
        "int8_margin": finetune["int8_margin"],
        "target_acc": target,
        "ceiling": finetune["epochs"],
        "stopped": stopped["reason"],
        "best_epoch": best_epoch,
        "epochs_used": used,
        "history": _curve(history, step),
    }
    log(_stop_line(record, best["acc"]))
    return record


def _finetune(
    model: nn.Module,
    teacher: nn.Module,
    data: dict[str, Any],
    settings: dict[str, Any],
    epochs: int,
    step: int,
    log: Callable[[str], Any],
    after_epoch: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """One fine-tune of ``epochs`` on the train split, distilled from ``teacher``, scored on the
    held-back part after every epoch. The last step shuffles with ``train.seed`` (so one step
    fine-tunes as before), an earlier step ``k`` with ``train.seed + k``."""
    finetune, train = settings["finetune"], settings["train"]
    seed = train["seed"] if step == settings["steps"] else train["seed"] + step
    return training.train_model(
        model,
        # The train split without its held-back part; no eval split: it decides nothing here.
        {key: data[key] for key in ("train_x", "train_y", "holdout_x", "holdout_y")},
        epochs=epochs,
        batch_size=train["batch_size"],
        lr=finetune["lr"],
        seed=seed,
        momentum=train["momentum"],
        weight_decay=train["weight_decay"],
        teacher=teacher,
        distillation=finetune["distillation"],
        temperature=finetune["temperature"],
        warmup_epochs=min(1.0, 0.25 * epochs),
        after_epoch=after_epoch,
        log=log,
    )


def _curve(epochs: list[dict[str, Any]], step: int) -> list[dict[str, Any]]:
    """A fine-tune's epochs as the record's curve (:class:`mobileforge.records.RecoveryEpoch`):
    the eval split is not in it (no fine-tune sees it), a missing held-back score is None."""
    return [
        {
            "epoch": epoch["epoch"],
            "step": step,
            "loss": epoch["loss"],
            "train_acc": epoch["train_acc"],
            "holdout_acc": None if math.isnan(epoch["holdout_acc"]) else epoch["holdout_acc"],
            "seconds": epoch["seconds"],
        }
        for epoch in epochs
    ]


def _stop_line(record: dict[str, Any], best: float) -> str:
    """Why the recovery stopped, with the numbers."""
    used, ceiling, target = record["epochs_used"], record["ceiling"], record["target_acc"]
    if ceiling == 0:
        return "recovery: prune.finetune.epochs is 0, no fine-tuning"
    if target is None:
        return (
            f"recovery: ran the ceiling of {ceiling} epochs (train.holdout is 0: no held-back "
            "score to stop on); kept the last epoch"
        )
    how = (
        f"target {target:.2f}% = unpruned {record['reference_holdout_acc']:.2f}% - "
        f"(budget {record['accuracy_budget']:g} - int8 margin {record['int8_margin']:g})"
    )
    kept = f"kept epoch {record['best_epoch']} (held-back top-1 {best:.2f}%)"
    if record["stopped"] == "within_budget":
        return f"recovery: within budget after epoch {used} of at most {ceiling}: {how}; {kept}"
    if record["stopped"] == "patience":
        return (
            f"recovery: stopped after epoch {used} of at most {ceiling}, no better held-back "
            f"score for {used - record['best_epoch']} epoch(s) (patience); not within budget: "
            f"{how}; {kept}"
        )
    return f"recovery: reached the ceiling of {ceiling} epochs, not within budget: {how}; {kept}"
