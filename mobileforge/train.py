"""Training, accuracy and user checkpoints.

Training is deliberately plain (SGD + momentum, warm-up then cosine learning rate, cross-entropy;
AdamW on request: transformers train much better with it) and deterministic: shuffling uses a
local ``torch.Generator``, dropout runs under a forked and seeded global RNG that is restored
afterwards, and deterministic algorithms are switched on for the duration of the call. Two runs
with the same seed, data, initial weights and thread count produce bit-identical weights, so
Snakemake reruns do not change downstream artifacts.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mobileforge.safeload import load_weights_only

__all__ = [
    "TRAIN_DEFAULTS",
    "evaluate_accuracy",
    "load_user_checkpoint",
    "train_model",
    "training_trend",
]

#: A last epoch whose train loss fell by this fraction of its value, or whose eval top-1 rose
#: by this many points, ends a training that was still improving (:func:`training_trend`).
STILL_IMPROVING_LOSS_FALL = 0.1
STILL_IMPROVING_EVAL_POINTS = 1.0
#: How to write a checkpoint this loader accepts: the end of its error messages.
SAVE_HINT = "Save it with torch.save(model.state_dict(), path)."

#: Values of the ``optimizer`` setting.
OPTIMIZERS = ("sgd", "adamw")

#: Optional ``**extra`` settings of :func:`train_model` and their defaults. Chosen (measured on
#: the shapes data, 3 epochs, lr 0.05, batch 64) so that short from-scratch trainings converge:
#: a one-epoch warm-up made MobileNetV2 reliable across seeds (shorter ones left some seeds at
#: 82-91% eval accuracy), and random flips were worth several points over none.
TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "sgd",  # "sgd" (momentum, nesterov) or "adamw" (decoupled weight decay)
    "momentum": 0.9,
    "weight_decay": 5e-4,  # not applied to BatchNorm weights and biases
    "nesterov": True,
    "warmup_epochs": 1.0,  # linear warm-up length in epochs (fractions allowed)
    "schedule": "cosine",  # after warm-up: "cosine" (to zero, per step) or "constant"
    "label_smoothing": 0.0,
    "hflip": True,  # random horizontal flips; turn off for data that is not mirror-symmetric
    "eval_batch_size": 256,
    "clip_grad_norm": 0.0,  # max gradient norm; 0 = no clipping
    "channels_last": True,  # NHWC while training: ~1.6x faster for depthwise convs on CPU
}


@contextlib.contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    """Seed the global RNG (dropout) and force deterministic kernels, restoring both afterwards."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def _lr_at(step: int, total: int, warmup: int, base_lr: float, schedule: str) -> float:
    if warmup and step < warmup:
        return base_lr * (step + 1) / warmup
    if schedule == "constant":
        return base_lr
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def evaluate_accuracy(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 256,
) -> float:
    """Top-1 accuracy in percent of ``forward`` (any batch -> logits callable) on ``(x, y)``.

    Works for ``nn.Module``, scripted and lite-interpreter modules alike. An ``nn.Module`` in
    training mode is evaluated in ``eval()`` mode and put back, so BatchNorm statistics are
    neither used from the batch nor updated by measuring.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
    if x.shape[0] == 0:
        raise ValueError("cannot evaluate accuracy on an empty set")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = isinstance(forward, nn.Module) and forward.training
    if was_training:
        forward.eval()
    correct = 0
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                logits = forward(x[i : i + batch_size])
                if isinstance(logits, tuple | list):  # e.g. models returning (logits, aux)
                    logits = logits[0]
                correct += int((logits.argmax(dim=1) == y[i : i + batch_size]).sum())
    finally:
        if was_training:
            forward.train()
    return 100.0 * correct / x.shape[0]


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_of: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    gen: torch.Generator,
    lr_at: Callable[[int], float],
    first_step: int,
    cfg: dict[str, Any],
    epoch: int,
) -> tuple[float, float, int]:
    """One pass over the shuffled training set; returns (mean loss, train accuracy %, steps)."""
    n = x.shape[0]
    model.train()
    perm = torch.randperm(n, generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5 if cfg["hflip"] else None
    loss_sum, correct, seen, step = 0.0, 0, 0, first_step
    for start in range(0, n, batch_size):
        idx = perm[start : start + batch_size]
        if len(idx) < 2:  # BatchNorm cannot normalise a batch of one
            break
        xb, yb = x[idx], y[idx]
        if flips is not None:
            xb = torch.where(flips[idx][:, None, None, None], xb.flip(-1), xb)
        if cfg["channels_last"]:
            xb = xb.contiguous(memory_format=torch.channels_last)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        optimizer.zero_grad(set_to_none=True)
        logits = model(xb)
        loss = loss_of(logits, yb, xb)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"train: loss became {loss.item()} at epoch {epoch}, step {step + 1}; "
                "lower the learning rate"
            )
        loss.backward()
        if cfg["clip_grad_norm"]:
            nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_grad_norm"])
        optimizer.step()
        step += 1
        loss_sum += float(loss.detach()) * len(idx)
        correct += int((logits.detach().argmax(1) == yb).sum())
        seen += len(idx)
    return loss_sum / seen, 100.0 * correct / seen, step - first_step


def _loss(
    criterion: nn.Module, teacher: nn.Module | None, distillation: float, temperature: float
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss of (logits, labels, images): cross-entropy, or distillation with it."""
    if teacher is None:
        return lambda logits, labels, _images: criterion(logits, labels)
    if not 0.0 <= distillation <= 1.0 or temperature <= 0:
        raise ValueError(f"need distillation in [0, 1] and temperature > 0, got {distillation}, "
                         f"{temperature}")  # fmt: skip
    teacher.eval()

    def distilled(logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = torch.log_softmax(teacher(images) / temperature, dim=1)
        student = torch.log_softmax(logits / temperature, dim=1)
        kd = nn.functional.kl_div(student, target, reduction="batchmean", log_target=True)
        return distillation * temperature**2 * kd + (1 - distillation) * criterion(logits, labels)

    return distilled


def _settings(epochs: int, batch_size: int, lr: float, extra: dict[str, Any]) -> dict[str, Any]:
    """:data:`TRAIN_DEFAULTS` with ``extra`` over them, checked with the basic settings."""
    unknown = set(extra) - set(TRAIN_DEFAULTS)
    if unknown:
        raise ValueError(
            f"train: unknown setting(s) {sorted(unknown)}; known: {sorted(TRAIN_DEFAULTS)}"
        )
    cfg = {**TRAIN_DEFAULTS, **extra}
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(
            f"train: need epochs >= 1, batch_size >= 1, lr > 0 (got {epochs}, {batch_size}, {lr})"
        )
    if cfg["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"train: optimizer must be one of {OPTIMIZERS}, got {cfg['optimizer']!r}")
    if cfg["schedule"] not in ("cosine", "constant"):
        raise ValueError(f"train: schedule must be 'cosine' or 'constant', got {cfg['schedule']}")
    return cfg


def _optimizer(model: nn.Module, lr: float, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD with momentum, or AdamW (``momentum`` unused); no weight decay on normalisation
    weights, biases and other 1-d parameters (decaying them only hurts)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg["weight_decay"]},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    return torch.optim.SGD(
        groups,
        lr=lr,
        momentum=cfg["momentum"],
        nesterov=bool(cfg["nesterov"]) and cfg["momentum"] > 0,
    )


def _score(model: nn.Module, x: torch.Tensor | None, y: torch.Tensor | None, batch: int) -> float:
    """Top-1 of ``model`` on ``(x, y)``; nan without samples."""
    if x is None or y is None or len(x) == 0:
        return float("nan")
    return evaluate_accuracy(model, x, y, batch)


def _scored(
    model: nn.Module,
    record: dict[str, Any],
    data: dict[str, Any],
    cfg: dict[str, Any],
    start: float,
) -> dict[str, Any]:
    """An epoch's ``record`` with its top-1 on the held-back part of the train split
    (``holdout_acc``) and on the eval split (``eval_acc``), nan for a split ``data`` lacks, and
    its seconds since ``start``; leaves the model in eval mode."""
    model.eval()
    batch = cfg["eval_batch_size"]
    holdout_acc = _score(model, data.get("holdout_x"), data.get("holdout_y"), batch)
    eval_acc = _score(model, data.get("eval_x"), data.get("eval_y"), batch)
    return {
        **record,
        "holdout_acc": holdout_acc,
        "eval_acc": eval_acc,
        "seconds": time.perf_counter() - start,
    }


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    """``epoch 2/3 loss 0.412 train_acc 88.1% holdout_acc 90.2% eval_acc 91.3% 4.2s``: the
    scores of the splits the training has (none printed as nan)."""
    scores = "".join(
        f" {key} {record[key]:.1f}%"
        for key in ("holdout_acc", "eval_acc")
        if not math.isnan(record[key])
    )
    return (
        f"epoch {record['epoch']}/{epochs} loss {record['loss']:.3f} "
        f"train_acc {record['train_acc']:.1f}%{scores} {record['seconds']:.1f}s"
    )


def train_model(
    model: nn.Module,
    data: dict[str, Any],
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    log: Callable[[str], Any] = print,
    teacher: nn.Module | None = None,
    distillation: float = 0.5,
    temperature: float = 2.0,
    after_epoch: Callable[[dict[str, Any]], bool] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Train ``model`` in place on ``data["train_x"/"train_y"]``; return the per-epoch history.

    Logs one line per epoch (``epoch 2/3 loss 0.412 train_acc 88.1% holdout_acc 90.2% eval_acc
    91.3% 4.2s``, the scores of the splits ``data`` has) and leaves the model in ``eval()``
    mode with contiguous weights. ``lr`` is the peak of a linear warm-up followed by a cosine
    decay to zero, per step. Thread count is left to the caller.

    Args:
        model: the network, modified in place.
        data: a dataset dict (see :mod:`mobileforge.data`); ``eval_x``/``eval_y`` and the
            held-back part of the train split ``holdout_x``/``holdout_y``
            (:func:`mobileforge.data.holdout.split_holdout`) are optional: each is scored after
            every epoch when present.
        epochs, batch_size, lr: the usual; a last partial batch of one sample is dropped
            (BatchNorm cannot train on one).
        seed: seeds shuffling, flips and dropout.
        log: called with each log line.
        teacher: if given, knowledge distillation (recovery fine-tuning of a pruned model): the
            loss is ``distillation * T^2 * KL(teacher || model at temperature T)`` plus
            ``(1 - distillation) *`` cross-entropy with the labels, the teacher in eval mode
            on the same (flipped) images.
        after_epoch: called with each epoch's record once it is scored; True ends the training
            there (the learning-rate schedule still spans ``epochs``, so the weights of epoch k
            are the same whether or not a run stops after it). The trend is not logged with it:
            the caller says why the training stopped.
        **extra: overrides of :data:`TRAIN_DEFAULTS`.

    Returns:
        ``{"epochs": [{"epoch", "loss", "train_acc", "holdout_acc", "eval_acc", "seconds"},
        ...],
        "trend": training_trend(...), "final_eval_acc": float, "seconds": float,
        "settings": {...}}``; the trend's message (whether training stopped while still
        improving) is also logged.
    """
    cfg = _settings(epochs, batch_size, lr, extra)
    x, y = data["train_x"], data["train_y"]
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"train: need at least 2 training samples, got {n}")

    optimizer = _optimizer(model, lr, cfg)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg["label_smoothing"])
    loss_of = _loss(criterion, teacher, distillation, temperature)
    steps_per_epoch = n // batch_size + (1 if n % batch_size >= 2 else 0)
    total = steps_per_epoch * epochs
    warmup = min(total - 1, int(round(cfg["warmup_epochs"] * steps_per_epoch)))

    def lr_at(step: int) -> float:
        return _lr_at(step, total, warmup, lr, cfg["schedule"])

    gen = torch.Generator().manual_seed(int(seed))
    history: list[dict[str, Any]] = []
    start_all = time.perf_counter()
    step = 0
    if cfg["channels_last"]:
        model.to(memory_format=torch.channels_last)
    try:
        with _deterministic(int(seed)):
            for epoch in range(1, epochs + 1):
                start = time.perf_counter()
                loss, train_acc, steps = _train_epoch(
                    model, optimizer, loss_of, x, y, batch_size, gen, lr_at, step, cfg, epoch
                )
                step += steps
                record = {"epoch": epoch, "loss": loss, "train_acc": train_acc}
                history.append(_scored(model, record, data, cfg, start))
                log(_epoch_line(history[-1], epochs))
                if after_epoch is not None and after_epoch(history[-1]):
                    break
    finally:
        # Hand back ordinary contiguous weights: downstream stages and users expect them.
        model.to(memory_format=torch.contiguous_format)
        model.eval()
    trend = training_trend(history)
    if after_epoch is None:
        log(trend["message"])
    return {
        "epochs": history,
        "trend": trend,
        "final_eval_acc": history[-1]["eval_acc"],
        "seconds": time.perf_counter() - start_all,
        "settings": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, **cfg},
    }


def training_trend(epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether training stopped while still improving, judged by its last epoch.

    Still improving: over the last epoch the train loss fell by at least
    :data:`STILL_IMPROVING_LOSS_FALL` of its value, or eval top-1 rose by at least
    :data:`STILL_IMPROVING_EVAL_POINTS` points. Returns ``still_improving`` (None after one
    epoch: no trend to judge), ``loss_fall`` (fraction), ``eval_gain`` (points; None without an
    eval split) and a one-line ``message`` saying which, with the numbers.
    """
    if len(epochs) < 2:
        return {
            "still_improving": None,
            "loss_fall": None,
            "eval_gain": None,
            "message": "trained one epoch: no trend tells whether more epochs would help "
            "(README: sizing epochs)",
        }
    previous, last = epochs[-2], epochs[-1]
    loss_fall = (previous["loss"] - last["loss"]) / previous["loss"] if previous["loss"] else 0.0
    eval_gain = last["eval_acc"] - previous["eval_acc"]
    if math.isnan(eval_gain):
        eval_gain = None
    signs = []
    if loss_fall >= STILL_IMPROVING_LOSS_FALL:
        signs.append(
            f"the train loss fell {100 * loss_fall:.0f}% ({previous['loss']:.3f} -> "
            f"{last['loss']:.3f})"
        )
    if eval_gain is not None and eval_gain >= STILL_IMPROVING_EVAL_POINTS:
        signs.append(
            f"eval top-1 rose {eval_gain:.1f} points ({previous['eval_acc']:.1f}% -> "
            f"{last['eval_acc']:.1f}%)"
        )
    if signs:
        message = (
            f"training stopped while still improving: in epoch {last['epoch']} "
            f"{' and '.join(signs)}; more epochs would likely help (README: sizing epochs)"
        )
    else:
        gain = "" if eval_gain is None else f", eval top-1 moved {eval_gain:+.1f} points"
        message = (
            f"training levelled off: in epoch {last['epoch']} the train loss fell "
            f"{100 * loss_fall:.0f}%{gain}"
        )
    return {
        "still_improving": bool(signs),
        "loss_fall": loss_fall,
        "eval_gain": eval_gain,
        "message": message,
    }


def load_user_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a user's state_dict safely (``weights_only=True``: unpickling cannot run code).

    Accepts a plain ``state_dict`` or a dict with a ``"state_dict"`` entry (other entries, such
    as metadata, are ignored). A ``"module."`` prefix on every key (from ``DataParallel``) is
    stripped.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file would execute code when unpickled (unsafe: the message names
            what it calls), is corrupt, truncated or not a torch file, or does not hold a
            mapping of parameter names to tensors.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    obj = load_weights_only(source, "checkpoint", hint=f"A plain state_dict does not. {SAVE_HINT}")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise ValueError(
            f"{path}: expected a state_dict (mapping of parameter names to tensors), "
            f"got {type(obj).__name__ if not isinstance(obj, dict) else 'an empty dict'}. "
            f"{SAVE_HINT}"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(
            f"{path}: not a state_dict: entries {bad[:5]!r} are not tensors keyed by name. "
            f"{SAVE_HINT}"
        )
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj
