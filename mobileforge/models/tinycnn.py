"""TinyCNN: a small plain CNN, the fast smoke-test model of the zoo.

Built only from patterns the FX graph-mode quantizer knows how to fuse and quantize
(Conv2d-BatchNorm2d-ReLU, Linear-ReLU), with no data-dependent control flow, so the same module
traces with ``torch.fx``, quantizes with ``quantize_fx``, scripts and exports.
"""

# No ``from __future__ import annotations``: torch.fx copies the forward annotations into the
# generated code as strings that torch.jit.script cannot resolve (fuse_fx output fails to script).

import torch
from torch import nn

__all__ = ["TinyCNN", "ConvBNReLU", "tinycnn"]


class ConvBNReLU(nn.Sequential):
    """3x3 convolution (no bias, BN follows) + BatchNorm + ReLU; fuses into one quantized op."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class TinyCNN(nn.Module):
    """Stages of ``ConvBNReLU`` blocks separated by 2x2 max-pooling, then a two-layer MLP head.

    Args:
        num_classes: number of output logits.
        width: channels of the first stage; each following stage doubles it.
        stages: table of ``(width multiplier, blocks)`` per stage; a 2x2 max-pool follows
            every stage but the last. The default suits 32x32 inputs (32 -> 16 -> 8).
        in_channels: channels of the input image.
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: int = 16,
        stages: tuple[tuple[int, int], ...] = ((1, 1), (2, 1), (4, 2)),
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if width < 1 or num_classes < 1:
            raise ValueError(f"width and num_classes must be >= 1, got {width}, {num_classes}")
        layers: list[nn.Module] = []
        channels = in_channels
        for i, (mult, blocks) in enumerate(stages):
            out = width * mult
            for _ in range(blocks):
                layers.append(ConvBNReLU(channels, out))
                channels = out
            if i < len(stages) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        hidden = max(channels, 32)
        # Linear -> ReLU -> Linear so that the quantizer has a linear-relu fusion to exercise.
        self.classifier = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.pool(x)
        x = self.flatten(x)
        return self.classifier(x)


def tinycnn(num_classes: int = 10, width: int = 16, in_channels: int = 3) -> TinyCNN:
    """Build a :class:`TinyCNN` (about 0.1 M parameters at ``width=16``).

    Args:
        num_classes: number of output logits.
        width: channels of the first stage (stages use width, 2*width, 4*width).
        in_channels: image channels (3 for RGB, 1 for grayscale).
    """
    return TinyCNN(num_classes=num_classes, width=width, in_channels=in_channels)
