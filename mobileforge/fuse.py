"""Conv-bn(-relu) and linear-relu fusion with FX graph mode, checked against the unfused model.

FX (rather than eager ``fuse_modules``) finds fusable patterns in any traceable user model, not
only in modules that name their layers for it.
"""

from __future__ import annotations

import torch

from mobileforge.quiet import quiet_quantization_warnings


def fuse(model: torch.nn.Module) -> torch.fx.GraphModule:
    """Return the fused copy of ``model`` (eval mode; the input is left untouched)."""
    from torch.ao.quantization.quantize_fx import fuse_fx

    with quiet_quantization_warnings():
        return fuse_fx(model.eval())


@torch.no_grad()
def max_output_difference(
    reference: torch.nn.Module, candidate: torch.nn.Module, inputs: torch.Tensor, batch: int = 256
) -> float:
    """Largest absolute difference between the two models' outputs over ``inputs``."""
    worst = 0.0
    for start in range(0, len(inputs), batch):
        chunk = inputs[start : start + batch]
        worst = max(worst, (reference(chunk) - candidate(chunk)).abs().max().item())
    return worst
