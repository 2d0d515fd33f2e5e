"""Helpers every dataset source shares: normalisation, stratified splits, safe torch loading."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from mobileforge.safeload import load_weights_only


def normalise(data: dict[str, Any]) -> dict[str, Any]:
    """Standardise all splits with the train split's per-channel mean/std; record them in meta.

    Only train statistics are used so that eval stays unseen; the stats travel with the data so
    a deployed model's preprocessing can be reproduced.
    """
    x = data["train_x"]
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    for key in ("train_x", "calib_x", "eval_x"):
        # In place: at 224x224 a split is gigabytes, and temporaries would double the peak.
        t = data[key].contiguous()
        t.sub_(mean[None, :, None, None]).div_(std[None, :, None, None])
        data[key] = t
    data["meta"]["mean"] = [float(v) for v in mean]
    data["meta"]["std"] = [float(v) for v in std]
    return data


def stratified_split(
    labels: np.ndarray, calib_fraction: float, eval_fraction: float, seed: int, source: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic per-class split into disjoint train/calib/eval index arrays.

    Stratified so that each class is represented in eval in its own proportion even for small
    folders; the calib split is sampled from every class too.
    """
    for name, frac in (("calib_fraction", calib_fraction), ("eval_fraction", eval_fraction)):
        if not 0.0 < frac < 1.0:
            raise ValueError(f"{source}: {name} must be in (0, 1), got {frac}")
    if calib_fraction + eval_fraction >= 1.0:
        raise ValueError(
            f"{source}: calib_fraction + eval_fraction must be < 1 to leave training data, "
            f"got {calib_fraction} + {eval_fraction}"
        )
    rng = np.random.default_rng([int(seed), 7])
    train, calib, evals = [], [], []
    for k in np.unique(labels):
        idx = rng.permutation(np.nonzero(labels == k)[0])
        # Round half up (not Python's half-to-even) so that fractions behave as users expect.
        n_eval = math.floor(len(idx) * eval_fraction + 0.5)
        n_calib = math.floor(len(idx) * calib_fraction + 0.5)
        evals.append(idx[:n_eval])
        calib.append(idx[n_eval : n_eval + n_calib])
        train.append(idx[n_eval + n_calib :])
    parts = [np.sort(np.concatenate(p)) for p in (train, calib, evals)]
    for name, part in zip(("train", "calib", "eval"), parts, strict=True):
        if len(part) == 0:
            raise ValueError(
                f"{source}: the {name} split is empty ({len(labels)} samples, "
                f"calib_fraction={calib_fraction}, eval_fraction={eval_fraction}); "
                "add more samples or raise the fraction"
            )
    return parts[0], parts[1], parts[2]


def torch_load_weights_only(path: Path, what: str) -> Any:
    """``torch.load(weights_only=True)`` with errors that name the file and say what is wrong:
    unsafe (unpickling would execute code) or corrupt (see :mod:`mobileforge.safeload`)."""
    return load_weights_only(
        path, what, hint="Save only tensors, lists, dicts and numbers with torch.save."
    )
