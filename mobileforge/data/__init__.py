"""Datasets: synthetic shapes, a folder of class sub-folders, or a tensor file.

Nothing is ever downloaded. Every loader returns the same plain dict of tensors and primitives so
the result can be written with :func:`save_dataset` and read back with ``weights_only=True``
(no pickled objects to trust)::

    {"train_x": float32 [N,C,H,W], "train_y": int64 [N],
     "calib_x": float32 [M,C,H,W],                      # for int8 calibration, never trained on
     "calib_y": int64 [M],            # its labels (absent only for a user's unlabelled calib_x)
     "eval_x": float32 [K,C,H,W], "eval_y": int64 [K],
     "classes": list[str],
     "meta": {"name", "seed", "height", "width", "channels", "mean", "std", ...}}

The three splits are disjoint, so the accuracy measured on ``eval`` and the ranges observed on
``calib`` say something about data the model has not fitted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mobileforge.data.common import torch_load_weights_only
from mobileforge.data.shapes import SHAPE_CLASSES, SHAPES_PRESETS, make_shapes
from mobileforge.data.user import IMAGE_EXTENSIONS, load_folder, load_tensors
from mobileforge.files import atomic_writer

__all__ = [
    "IMAGE_EXTENSIONS",
    "SHAPE_CLASSES",
    "SHAPES_PRESETS",
    "build_dataset",
    "load_dataset",
    "load_folder",
    "load_tensors",
    "make_shapes",
    "save_dataset",
]

# --------------------------------------------------------------------------------------------
# dispatch and persistence
# --------------------------------------------------------------------------------------------

_BUILDERS = {"shapes": make_shapes, "folder": load_folder, "tensors": load_tensors}


def build_dataset(spec: dict[str, Any], height: int, width: int, channels: int = 3) -> dict:
    """Build the dataset described by a config ``dataset:`` block.

    ``spec["name"]`` picks the loader (``shapes``, ``folder``, ``tensors``); every other key is
    passed to it as a keyword (``seed``, ``train_size``, ``path``, ``eval_fraction``, ...), so an
    unknown key is an error rather than silently ignored.
    """
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in _BUILDERS:
        raise ValueError(f"dataset.name: expected one of {', '.join(_BUILDERS)}, got {name!r}")
    if name in ("folder", "tensors") and "path" not in spec:
        raise ValueError(f"dataset: name '{name}' needs a 'path'")
    import inspect

    builder = _BUILDERS[name]
    params = inspect.signature(builder).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    reserved = {"height", "width", "channels"} & set(spec)
    if reserved:
        raise ValueError(
            f"dataset: {sorted(reserved)} come from input_shape, not from the dataset block"
        )
    if not accepts_any:
        unknown = set(spec) - set(params)
        if unknown:
            allowed = sorted(set(params) - {"height", "width", "channels"})
            raise ValueError(
                f"dataset: unknown option(s) {sorted(unknown)} for '{name}'; allowed: {allowed}"
            )
    return builder(height=height, width=width, channels=channels, **spec)


def save_dataset(data: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``data`` with ``torch.save`` atomically (temp file in the same dir, then rename).

    A killed job therefore never leaves a truncated file that looks complete to Snakemake.
    """
    with atomic_writer(path) as handle:
        torch.save(data, handle)


def load_dataset(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a dataset written by :func:`save_dataset` (``weights_only=True``: no code runs)."""
    source = Path(path)
    data = torch_load_weights_only(source, "dataset")
    missing = [
        k
        for k in ("train_x", "train_y", "calib_x", "eval_x", "eval_y", "classes", "meta")
        if not isinstance(data, dict) or k not in data
    ]
    if missing:
        raise ValueError(
            f"{source}: not a mobileforge dataset (missing {missing}); rebuild it with the "
            "workflow's dataset rule"
        )
    return data
