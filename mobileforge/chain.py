"""Rebuild the modules of the artifact chain from our stage files.

Each stage file stores weights and the metadata that names the architecture; the module is
rebuilt from code (arch -> fuse -> prepare/convert) and the weights loaded into it, so nothing
but tensors and plain values is ever unpickled.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from mobileforge.fuse import fuse
from mobileforge.models import build_model
from mobileforge.quantize.fx import rebuild_quantized
from mobileforge.quantize.recipe import Recipe
from mobileforge.stagefile import load_stage


def example_input(meta: dict[str, Any]) -> torch.Tensor:
    return torch.zeros(meta["input_shape"])


def architecture(meta: dict[str, Any]) -> torch.nn.Module:
    return build_model(meta["arch"], meta["num_classes"], meta.get("kwargs") or {})


def _checkpoint_model(state_dict: dict[str, Any], meta: dict[str, Any]) -> torch.nn.Module:
    model = architecture(meta)
    model.load_state_dict(state_dict)
    return model.eval()


def _fused_model(state_dict: dict[str, Any], meta: dict[str, Any]) -> torch.nn.Module:
    model = fuse(architecture(meta))
    model.load_state_dict(state_dict)
    return model.eval()


def _quantized_model(state_dict: dict[str, Any], meta: dict[str, Any]) -> torch.nn.Module:
    fused = fuse(architecture(meta))
    recipe = Recipe.from_record(meta["recipe"])
    model = rebuild_quantized(fused, meta["engine"], recipe, example_input(meta), state_dict)
    return model.eval()


_REBUILD = {
    "checkpoint": _checkpoint_model,
    "fused": _fused_model,
    "int8": _quantized_model,
    "int8_pruned": _quantized_model,
}


def load_checkpoint_model(path: str | os.PathLike[str]) -> tuple[torch.nn.Module, dict[str, Any]]:
    state_dict, meta = load_stage(path)
    return _checkpoint_model(state_dict, meta), meta


def load_fused_model(path: str | os.PathLike[str]) -> tuple[torch.nn.Module, dict[str, Any]]:
    state_dict, meta = load_stage(path)
    return _fused_model(state_dict, meta), meta


def load_quantized_model(path: str | os.PathLike[str]) -> tuple[torch.nn.Module, dict[str, Any]]:
    state_dict, meta = load_stage(path)
    return _quantized_model(state_dict, meta), meta


def load_stage_model(path: str | os.PathLike[str]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load any stage file, rebuilding the module the stage recorded in it (one read)."""
    state_dict, meta = load_stage(path)
    return _REBUILD[meta["stage"]](state_dict, meta), meta
