"""A small vision transformer of a user's: the model int8's dynamic recipe is for.

A conv patch embedding, pre-norm blocks whose attention is written with ``nn.Linear``,
``matmul`` and ``softmax``, a GELU MLP, LayerNorm and a linear head. Nearly all its MACs are in
linear layers and matrix products, so ``quantize.mode: auto`` builds ``int8_dynamic`` for it.
FX- and export-traceable, as docs/configuration.md asks of user models. Referenced from configs
by its import path ``tests.attention_nets:build``; ``build(dim=128, depth=3)`` at 32x32 is about
41 M MACs, the default a tiny one for the tests.
"""

import torch
from torch import nn

# No `from __future__ import annotations` here: see docs/configuration.md (TorchScript of the
# fused model).


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape[0], x.shape[1], x.shape[2]
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        weights = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out)


class Block(nn.Module):
    """Pre-norm: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_ratio * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(mlp_ratio * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class TinyViT(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        dim: int = 32,
        depth: int = 1,
        heads: int = 4,
        patch: int = 4,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)  # [B, tokens, dim]
        x = self.norm(self.blocks(x))
        return self.head(x.mean(dim=1))


def build(num_classes: int = 10, dim: int = 32, depth: int = 1, heads: int = 4) -> TinyViT:
    return TinyViT(num_classes=num_classes, dim=dim, depth=depth, heads=heads)
