"""A user model outside the zoo, built from the patterns quantizers find hard to follow.

Residual adds, a channel concatenation, hardswish and a squeeze-excite multiply (a sigmoid
gate broadcast over the feature map), in the style of MobileNetV3 / EfficientNet blocks. It is
FX- and export-traceable, as docs/configuration.md asks of user models. Referenced from configs
by its import path ``tests.user_nets:build``.
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
