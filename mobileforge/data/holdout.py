"""The held-back part of the train split: images no training step sees, that score a model
while it trains (``train.holdout``).

A fine-tune that stops "once within budget" needs a score of data it did not fit, and it must
not be the eval split (the numbers every artifact is judged by) nor the calibration split (the
int8 ranges). So the train stage and the channel points' fine-tune both train on the train split
minus this part, and score the model on it after every epoch: the unpruned model's score on it
is an honest reference for the pruned one, not a training accuracy.

The part is chosen per class (stratified: each class keeps its share, rounded half up) from
the **dataset's seed** (``data["meta"]["seed"]``), not from ``train.seed``: it is a property of
the data, like the calibration and eval splits, so every model trained on one dataset holds
back the same images, and changing a model's training seed changes its training only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

#: Mixed into the dataset's seed, so this draw is its own random stream (the splits use 7).
_STREAM = 11


def holdout_indices(labels: torch.Tensor, share: float, seed: int) -> tuple[torch.Tensor, ...]:
    """``(kept, held)``: sorted index tensors into ``labels`` that partition it, ``held`` about
    ``share`` of each class (rounded half up, at most all but one of a class: every class keeps
    a training sample). ``share`` 0: nothing held back."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"train.holdout must be in [0, 1), got {share}")
    labels_np = labels.cpu().numpy()
    rng = np.random.default_rng([int(seed), _STREAM])
    kept, held = [], []
    for k in np.unique(labels_np):
        idx = rng.permutation(np.nonzero(labels_np == k)[0])
        n_held = min(math.floor(len(idx) * share + 0.5), len(idx) - 1)
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    empty = np.zeros(0, dtype=np.int64)
    parts = [np.sort(np.concatenate(p)) if p else empty for p in (kept, held)]
    return tuple(torch.from_numpy(p.astype(np.int64)) for p in parts)


def split_holdout(data: dict[str, Any], share: float) -> dict[str, Any]:
    """``data`` (a dataset dict) with ``train_x``/``train_y`` reduced to what training may see
    and ``holdout_x``/``holdout_y`` added (empty with ``share`` 0); the other splits untouched,
    ``data`` itself not modified."""
    x, y = data["train_x"], data["train_y"]
    if share == 0:  # no copy: at 224x224 the train split is gigabytes
        return {**data, "holdout_x": x[:0], "holdout_y": y[:0]}
    kept, held = holdout_indices(y, share, data["meta"]["seed"])
    if len(held) == 0:
        raise ValueError(
            f"train.holdout {share} holds back no image of a train split of {len(y)}: "
            "raise it, add training data, or set it to 0 to train on everything"
        )
    return {
        **data,
        "train_x": x[kept],
        "train_y": y[kept],
        "holdout_x": x[held],
        "holdout_y": y[held],
    }
