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
from mobileforge.quantize import rebuild_quantized
from mobileforge.stagefile import load_stage


def example_input(meta: dict[str, Any]) -> torch.Tensor:
    return torch.zeros(meta["input_shape"])


def architecture(meta: dict[str, Any]) -> torch.nn.Module:
    return build_model(meta["arch"], meta["num_classes"], meta.get("kwargs") or {})


def load_checkpoint_model(path: str | os.PathLike[str]) -> tuple[torch.nn.Module, dict[str, Any]]:
    state_dict, meta = load_stage(path)
    model = architecture(meta)
    model.load_state_dict(state_dict)
    return model.eval(), meta


def load_fused_model(path: str | os.PathLike[str]) -> tuple[torch.nn.Module, dict[str, Any]]:
    state_dict, meta = load_stage(path)
    model = fuse(architecture(meta))
    model.load_state_dict(state_dict)
    return model.eval(), meta


def load_quantized_model(path: str | os.PathLike[str]) -> tuple[torch.nn.Module, dict[str, Any]]:
    state_dict, meta = load_stage(path)
    fused = fuse(architecture(meta))
    model = rebuild_quantized(
        fused, meta["engine"], meta["per_channel"], example_input(meta), state_dict
    )
    return model.eval(), meta


def load_stage_model(path: str | os.PathLike[str]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load any stage file, dispatching on the stage recorded in it."""
    _, meta = load_stage(path)
    loader = {
        "checkpoint": load_checkpoint_model,
        "fused": load_fused_model,
        "int8": load_quantized_model,
        "int8_pruned": load_quantized_model,
    }[meta["stage"]]
    return loader(path)
