"""Accuracy of an artifact itself, run by the runtime that will run it on the device.

Measuring the exported .ptl through the lite interpreter (not the eager model it came from)
catches export bugs: a wrong freeze, a lost quantization parameter, a bad engine.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

Forward = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def collect_logits(forward: Forward, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    outputs = [
        forward(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)
    ]
    return torch.cat(outputs).float()


def score(
    logits: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor | None
) -> dict[str, Any]:
    """Top-1 accuracy (percent) and the largest |logit - reference logit|."""
    accuracy = (logits.argmax(dim=1) == labels).double().mean().item() * 100
    diff = None if reference is None else (logits - reference).abs().max().item()
    return {"accuracy": accuracy, "max_abs_diff": diff, "n": len(labels)}


def evaluate_ptl(
    path: str | os.PathLike[str],
    inputs: torch.Tensor,
    labels: torch.Tensor,
    reference: torch.Tensor | None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Run the .ptl through the lite interpreter over the whole evaluation split."""
    from torch.jit.mobile import _load_for_lite_interpreter

    module = _load_for_lite_interpreter(os.fspath(path))
    logits = collect_logits(module, inputs, batch_size)
    return score(logits, labels, reference)
