"""User models outside the zoo, built from the patterns quantizers find hard to follow.

``build``: residual adds, a channel concatenation, hardswish and a squeeze-excite multiply (a
sigmoid gate broadcast over the feature map), in the style of MobileNetV3 / EfficientNet blocks.
``build_attention``: a tiny vision transformer (conv patches, LayerNorm, attention written with
Linear, matmul and softmax, GELU), the linear-heavy kind int8 recipes for CNNs do not serve.
Both are FX- and export-traceable, as docs/configuration.md asks of user models, and referenced
from configs by import path (``tests.user_nets:build``, ``tests.user_nets:build_attention``).
"""

import torch
from torch import nn

# No `from __future__ import annotations` here: see docs/configuration.md (TorchScript of the
# fused model).


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.relu = nn.ReLU()
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))
        return x * scale


class Block(nn.Module):
    """Two parallel branches concatenated, squeeze-excite, then a residual add."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.left = nn.Sequential(
            nn.Conv2d(channels, half, 1, bias=False), nn.BatchNorm2d(half), nn.Hardswish()
        )
        self.right = nn.Sequential(
            nn.Conv2d(channels, half, 3, padding=1, groups=half, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU6(),
        )
        self.se = SqueezeExcite(channels, max(4, channels // 4))
        self.project = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.left(x), self.right(x)], dim=1)
        return x + self.project(self.se(y))


class UserNet(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.Hardswish(),
        )
        self.blocks = nn.Sequential(Block(width), Block(width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.head(torch.flatten(self.pool(x), 1))


def build(num_classes: int = 10, width: int = 16) -> UserNet:
    return UserNet(num_classes=num_classes, width=width)


class Attention(nn.Module):
    """Multi-head self-attention written out: Linear q/k/v/projection, matmul, softmax."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.size(0), x.size(1), self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        weights = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) / self.head_dim**0.5, -1)
        out = torch.matmul(weights, v).transpose(1, 2)
        return self.proj(out.reshape(x.size(0), x.size(1), -1))


class AttentionBlock(nn.Module):
    """Pre-norm transformer block: LayerNorm -> attention, LayerNorm -> Linear-GELU-Linear."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class AttentionNet(nn.Module):
    """A tiny vision transformer: conv patch embedding, position embedding, blocks, mean pool."""

    def __init__(
        self, num_classes: int = 10, image_size: int = 16, patch: int = 4, dim: int = 32,
        depth: int = 1, heads: int = 2,
    ) -> None:  # fmt: skip
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.pos = nn.Parameter(0.02 * torch.randn(1, (image_size // patch) ** 2, dim))
        self.blocks = nn.Sequential(*(AttentionBlock(dim, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.embed(x).flatten(2).transpose(1, 2) + self.pos)
        return self.head(self.norm(x).mean(dim=1))


def build_attention(num_classes: int = 10, image_size: int = 16, depth: int = 1) -> AttentionNet:
    """The attention user model, ``tests.user_nets:build_attention`` (inputs image_size^2)."""
    return AttentionNet(num_classes=num_classes, image_size=image_size, depth=depth)
