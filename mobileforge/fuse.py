"""Conv-bn(-relu) and linear-relu fusion with FX graph mode; the fuse stage checks the outputs.

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
