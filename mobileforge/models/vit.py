"""A small vision transformer for small images: conv patches, pre-norm attention blocks.

Written with the plain operators every deployment path here follows: attention is ``nn.Linear``
(query, key, value, projection), ``torch.matmul`` and ``softmax`` rather than
``nn.MultiheadAttention`` (FX quantization does not look inside it) or
``F.scaled_dot_product_attention`` (one fused op neither int8 path quantizes). No data-dependent
control flow and no shape arithmetic beyond ``size()``, so the same module traces with
``torch.fx``, quantizes with ``prepare_fx`` and pt2e, scripts, and exports with ``torch.export``.

Defaults (``dim=128, depth=4, heads=4, mlp_ratio=2``, patch 4 at 32x32: 64 tokens) cost about
38 M MACs and 0.55 M parameters per image (``mobileforge.macs.count_macs``).
"""

# No ``from __future__ import annotations``: torch.fx copies the forward annotations into the
# generated code as strings that torch.jit.script cannot resolve (fuse_fx output fails to script).

import torch
from torch import nn

__all__ = ["Attention", "Block", "VisionTransformer", "vit"]


class Attention(nn.Module):
    """Multi-head self-attention over ``(batch, tokens, dim)``: Linear q/k/v, matmul, softmax.

    Separate query, key and value layers (not one ``qkv`` layer split afterwards) so no slicing
    op sits between the projections and the matrix products: each is a plain linear layer to
    the quantizers and to XNNPACK.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, tokens, dim) -> (batch, heads, tokens, head_dim)."""
        return x.reshape(x.size(0), x.size(1), self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self._split(self.q(x))
        k = self._split(self.k(x))
        v = self._split(self.v(x))
        weights = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        out = torch.matmul(weights, v).transpose(1, 2)
        return self.proj(out.reshape(x.size(0), x.size(1), -1))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """Patch embedding (a strided conv), learned position embedding, blocks, mean-pooled head.

    Args:
        num_classes: number of output logits.
        image_size: input height and width; fixes the number of tokens (and so the position
            embedding), which must match the config's ``input_shape``.
        patch_size: side of the square patches (``image_size`` must be a multiple).
        dim: token width.
        depth: number of transformer blocks.
        heads: attention heads per block (``dim`` must be a multiple).
        mlp_ratio: hidden width of each block's MLP, as a multiple of ``dim``.
        in_channels: channels of the input image.
    """

    def __init__(
        self,
        num_classes: int = 10,
        image_size: int = 32,
        patch_size: int = 4,
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"image_size {image_size} is not a multiple of patch_size {patch_size}"
            )
        tokens = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (batch, tokens, dim)
        x = self.blocks(x + self.pos_embed)
        return self.head(self.norm(x).mean(dim=1))


def vit(
    num_classes: int = 10,
    image_size: int = 32,
    patch_size: int = 4,
    dim: int = 128,
    depth: int = 4,
    heads: int = 4,
    mlp_ratio: float = 2.0,
    in_channels: int = 3,
) -> VisionTransformer:
    """Build a :class:`VisionTransformer` (about 38 M MACs, 0.55 M parameters at the defaults).

    Args:
        num_classes: number of output logits.
        image_size: input height and width (must equal the config's ``input_shape``).
        patch_size: patch side; ``(image_size / patch_size)^2`` tokens.
        dim: token width; depth: blocks; heads: attention heads (must divide ``dim``).
        mlp_ratio: MLP hidden width over ``dim``.
        in_channels: image channels.
    """
    return VisionTransformer(
        num_classes=num_classes,
        image_size=image_size,
        patch_size=patch_size,
        dim=dim,
        depth=depth,
        heads=heads,
        mlp_ratio=mlp_ratio,
        in_channels=in_channels,
    )
