"""User datasets: a folder of class sub-folders of images, or a tensor file."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobileforge.data.common import normalise, stratified_split, torch_load_weights_only

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def _user_dataset(
    name: str,
    source: Path,
    seed: int,
    channels: int,
    classes: list[str],
    splits: dict[str, torch.Tensor],
) -> dict[str, Any]:
    """The dataset record of a user source (``folder``, ``tensors``): its splits, already at
    the model's input size, and the metadata describing them."""
    height, width = splits["train_x"].shape[-2:]
    return {
        **splits,
        "classes": classes,
        "meta": {
            "name": name,
            "path": str(source),
            "seed": int(seed),
            "height": int(height),
            "width": int(width),
            "channels": int(channels),
            "num_classes": len(classes),
            "sizes": {s: int(splits[f"{s}_x"].shape[0]) for s in ("train", "calib", "eval")},
        },
    }


# --------------------------------------------------------------------------------------------
# folder of images
# --------------------------------------------------------------------------------------------


def load_folder(
    path: str | os.PathLike[str],
    height: int,
    width: int,
    channels: int = 3,
    calib_fraction: float = 0.1,
    eval_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, Any]:
    """Load ``path/<class>/<image>`` files with Pillow, resized to HxW, split deterministically.

    Class names are the sub-folder names in sorted order (label = index), as torchvision's
    ``ImageFolder``. Hidden files/folders are skipped; files that are not images by extension are
    ignored. Images are resized with bilinear filtering (no crop, aspect not preserved) and
    normalised with the train split's mean/std.

    Args:
        path: folder holding one sub-folder per class (at least two).
        height, width: output size.
        channels: 1 (grayscale) or 3 (RGB).
        calib_fraction, eval_fraction: fractions of each class for the calib and eval splits.
        seed: seed of the split.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(
            f"{root}: dataset folder not found (expected one sub-folder of images per class)"
        )
    if not root.is_dir():
        raise ValueError(f"{root}: dataset path is not a folder")
    if channels not in (1, 3):
        raise ValueError(f"{root}: channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise ValueError(
            f"{root}: found {len(class_dirs)} class folder(s), need at least 2: "
            "put the images of each class in their own sub-folder (e.g. cat/, dog/)"
        )
    mode = "RGB" if channels == 3 else "L"
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, cdir in enumerate(class_dirs):
        files = sorted(
            f
            for f in cdir.rglob("*")
            if f.is_file()
            and f.suffix.lower() in IMAGE_EXTENSIONS
            and not any(part.startswith(".") for part in f.relative_to(cdir).parts)
        )
        if not files:
            raise ValueError(
                f"{cdir}: class folder has no images (extensions: {', '.join(IMAGE_EXTENSIONS)})"
            )
        for f in files:
            try:
                with Image.open(f) as im:
                    im = im.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
                    arr = np.asarray(im, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                raise ValueError(f"{f}: cannot read image ({exc}); fix or remove the file") from exc
            images.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
            labels.append(label)
    x = torch.from_numpy(np.stack(images))
    y = np.asarray(labels, dtype=np.int64)
    tr, ca, ev = stratified_split(y, calib_fraction, eval_fraction, seed, str(root))
    yt = torch.from_numpy(y)
    splits = {
        "train_x": x[tr],
        "train_y": yt[tr],
        "calib_x": x[ca],
        "calib_y": yt[ca],
        "eval_x": x[ev],
        "eval_y": yt[ev],
    }
    classes = [d.name for d in class_dirs]
    data = _user_dataset("folder", root, seed, channels, classes, splits)
    return normalise(data)


# --------------------------------------------------------------------------------------------
# tensor file
# --------------------------------------------------------------------------------------------

_SPLIT_KEYS = ("train_x", "train_y", "eval_x", "eval_y")


def _check_x(x: Any, key: str, source: Path, channels: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{source}: '{key}' must be a tensor of shape [N,C,H,W], got {got}")
    if x.shape[1] != channels:
        raise ValueError(
            f"{source}: '{key}' has {x.shape[1]} channels, the config asks for {channels}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{source}: '{key}' is empty")
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if not x.is_floating_point():
        raise ValueError(f"{source}: '{key}' must be float or uint8, got {x.dtype}")
    return x.float()


def _check_y(y: Any, key: str, source: Path, n: int) -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.is_floating_point():
        got = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{source}: '{key}' must be an integer tensor of shape [N], got {got}")
    if y.shape[0] != n:
        raise ValueError(f"{source}: '{key}' has {y.shape[0]} labels for {n} images")
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"{source}: '{key}' has negative labels")
    return y.long()


def _resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if tuple(x.shape[-2:]) == (height, width):
        return x.contiguous()
    down = x.shape[-2] > height or x.shape[-1] > width
    return torch.nn.functional.interpolate(
        x, size=(height, width), mode="bilinear", align_corners=False, antialias=down
    ).contiguous()


def _tensor_splits(
    obj: dict[str, Any],
    source: Path,
    channels: int,
    calib_fraction: float,
    eval_fraction: float,
    seed: int,
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """(train_x, train_y, calib_x, calib_y or None, eval_x, eval_y) of a tensor file's dict:
    split per class from ``seed`` (``x``, ``y``), or as given, the calib split carved out of
    train where there is none."""
    if "x" in obj and "y" in obj:
        x = _check_x(obj["x"], "x", source, channels)
        y = _check_y(obj["y"], "y", source, x.shape[0])
        tr, ca, ev = stratified_split(y.numpy(), calib_fraction, eval_fraction, seed, str(source))
        tr_t, ca_t, ev_t = (torch.from_numpy(i) for i in (tr, ca, ev))
        train_x, train_y = x[tr_t], y[tr_t]
        calib_x, calib_y = x[ca_t], y[ca_t]
        eval_x, eval_y = x[ev_t], y[ev_t]
    elif all(k in obj for k in _SPLIT_KEYS):
        train_x = _check_x(obj["train_x"], "train_x", source, channels)
        train_y = _check_y(obj["train_y"], "train_y", source, train_x.shape[0])
        eval_x = _check_x(obj["eval_x"], "eval_x", source, channels)
        eval_y = _check_y(obj["eval_y"], "eval_y", source, eval_x.shape[0])
        if "calib_x" in obj:
            calib_x = _check_x(obj["calib_x"], "calib_x", source, channels)
            # Labels of a given calib split are optional: without them the int8 accuracy budget
            # is checked as top-1 agreement with fp32 (mobileforge.quantize.budget).
            calib_y = (
                _check_y(obj["calib_y"], "calib_y", source, calib_x.shape[0])
                if "calib_y" in obj
                else None
            )
        else:
            rng = np.random.default_rng([int(seed), 11])
            perm = torch.from_numpy(rng.permutation(train_x.shape[0]))
            n_calib = max(1, math.floor(train_x.shape[0] * calib_fraction + 0.5))
            if n_calib >= train_x.shape[0]:
                raise ValueError(f"{source}: too few training samples to carve a calib split")
            calib_x = train_x[perm[:n_calib].sort().values]
            calib_y = train_y[perm[:n_calib].sort().values]
            keep = perm[n_calib:].sort().values
            train_x, train_y = train_x[keep], train_y[keep]
    else:
        raise ValueError(
            f"{source}: unexpected keys {sorted(map(str, obj))}; expected 'x' and 'y' "
            "(split automatically) or 'train_x', 'train_y', 'eval_x', 'eval_y' "
            "[and 'calib_x', 'calib_y']"
        )
    return train_x, train_y, calib_x, calib_y, eval_x, eval_y


def load_tensors(
    path: str | os.PathLike[str],
    height: int,
    width: int,
    channels: int = 3,
    calib_fraction: float = 0.1,
    eval_fraction: float = 0.2,
    seed: int = 0,
    normalize: bool = False,
) -> dict[str, Any]:
    """Load a ``torch.save``-d dict of tensors (``weights_only=True``), resize and split it.

    Accepted layouts:

    * ``{"x": [N,C,H,W], "y": [N]}`` - split per class deterministically from ``seed``;
    * ``{"train_x", "train_y", "eval_x", "eval_y"[, "calib_x"[, "calib_y"]]}`` - used as given;
      without ``calib_x`` the calib split is carved out of train (so it is still disjoint from
      eval); without ``calib_y`` the int8 budget checks top-1 agreement instead of accuracy.

    Optional ``"classes"`` (list of names) labels the classes; otherwise they are "0", "1", ...
    ``x`` may be float (used as is unless ``normalize``) or uint8 (scaled to [0, 1]).

    Args:
        path: the tensor file.
        height, width: output size; other sizes are resized bilinearly.
        channels: expected channels of ``x``.
        calib_fraction, eval_fraction: split fractions where a split must be made.
        seed: seed of the split.
        normalize: standardise with the train split's mean/std (off: the data are assumed to be
            preprocessed already, as the user's model expects them).
    """
    source = Path(path)
    obj = torch_load_weights_only(source, "tensor dataset")
    if not isinstance(obj, dict):
        raise ValueError(
            f"{source}: expected a dict with keys 'x' and 'y' (or train_x/train_y/eval_x/eval_y), "
            f"got {type(obj).__name__}"
        )
    train_x, train_y, calib_x, calib_y, eval_x, eval_y = _tensor_splits(
        obj, source, channels, calib_fraction, eval_fraction, seed
    )
    num_classes = int(max(int(train_y.max()), int(eval_y.max()))) + 1
    classes = obj.get("classes")
    if classes is None:
        classes = [str(i) for i in range(num_classes)]
    elif not (isinstance(classes, list | tuple) and all(isinstance(c, str) for c in classes)):
        raise ValueError(f"{source}: 'classes' must be a list of strings")
    elif len(classes) < num_classes:
        raise ValueError(
            f"{source}: labels go up to {num_classes - 1} but only {len(classes)} class names"
        )
    splits = {
        "train_x": _resize(train_x, height, width),
        "train_y": train_y.contiguous(),
        "calib_x": _resize(calib_x, height, width),
        "eval_x": _resize(eval_x, height, width),
        "eval_y": eval_y.contiguous(),
    }
    if calib_y is not None:
        splits["calib_y"] = calib_y.contiguous()
    data = _user_dataset("tensors", source, seed, channels, list(classes), splits)
    if normalize:
        return normalise(data)
    data["meta"]["mean"] = [0.0] * channels
    data["meta"]["std"] = [1.0] * channels
    return data
