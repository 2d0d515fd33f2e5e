"""Our intermediate artifacts: a state_dict plus the metadata needed to rebuild the module.

They are never unpickled as arbitrary objects (the rule docs/configuration.md, "Your own model
and data", states for checkpoints): a stage file holds only tensors and plain values, is loaded
with ``weights_only=True``, and the module around the weights is rebuilt from the architecture
(see :mod:`mobileforge.chain`).
"""

from __future__ import annotations

import io
import os
from typing import Any

import torch

from mobileforge import records
from mobileforge.files import write_artifact


def torch_bytes(obj: Any) -> bytes:
    """``torch.save`` into memory: the zip's internal record names then do not depend on the
    file name, so two runs give byte-identical files."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def stage_bytes(state_dict: dict[str, Any], meta: dict[str, Any]) -> bytes:
    return torch_bytes({"state_dict": state_dict, "meta": meta})


def save_stage(
    path: str | os.PathLike[str],
    state_dict: dict[str, Any],
    meta: dict[str, Any],
    sidecar: str | os.PathLike[str],
    info: dict[str, Any],
) -> dict[str, Any]:
    """Write a stage file atomically plus its JSON sidecar (``meta`` and ``info`` merged).

    ``meta`` is a :class:`mobileforge.records.StageMeta`: what rebuilds the model.
    """
    records.check(records.StageMeta, meta, os.fspath(path))
    return write_artifact(path, stage_bytes(state_dict, meta), sidecar, {**meta, **info})


def load_stage(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return payload["state_dict"], payload["meta"]
