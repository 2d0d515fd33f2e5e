"""MobileNetV2 (Sandler et al., 2018), architecture and parameter names identical to torchvision.

Written out here because torchvision is not a dependency. Module names and order match
``torchvision.models.mobilenet_v2`` so a torchvision state_dict loads into it unchanged
(3,504,872 parameters at ``width_mult=1.0``, 1000 classes). The residual add is a plain ``+``,
which FX graph-mode quantization turns into a quantized add without eager-mode ``FloatFunctional``.
"""

# No ``from __future__ import annotations``: torch.fx copies the forward annotations into the
# generated code as strings that torch.jit.script cannot resolve (fuse_fx output fails to script).

import torch
from torch import nn

__all__ = ["MobileNetV2", "InvertedResidual", "Conv2dNormActivation", "mobilenet_v2"]

#: Stage table of the paper and torchvision: expansion t, output channels c, repeats n, stride s.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without going below 90% of ``v`` (as TF/TV)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class Conv2dNormActivation(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d + ReLU6, laid out as torchvision's block of that name."""

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(
                in_planes, out_planes, kernel_size, stride, padding, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_planes),
            nn.ReLU6(inplace=True),
        )
        self.out_channels = out_planes


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (3x3) -> linear project (1x1), with a skip when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2, got {stride}")
        self.stride = stride
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden_dim, kernel_size=1))
        layers.extend(
            [
                Conv2dNormActivation(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
                nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
                nn.BatchNorm2d(oup),
            ]
        )
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ``use_res_connect`` is fixed at construction, so FX traces one branch statically.
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 backbone + dropout/linear classifier.

    Args:
        num_classes: number of output logits.
        width_mult: scales every layer's channels (0.5 halves them); the last 1x1 conv keeps 1280
            channels unless ``width_mult > 1``.
        round_nearest: channels are rounded to a multiple of this (8 suits SIMD kernels).
        dropout: dropout probability before the classifier.
        inverted_residual_setting: stage table ``(t, c, n, s)``; defaults to the paper's.
        in_channels: image channels.
        zero_init_residual: start the last BatchNorm of every residual block at zero, so each
            block starts as the identity (as ResNet's option); speeds up short trainings.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        round_nearest: int = 8,
        dropout: float = 0.2,
        inverted_residual_setting: tuple[tuple[int, int, int, int], ...] | None = None,
        in_channels: int = 3,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        setting = inverted_residual_setting or INVERTED_RESIDUAL_SETTING
        if any(len(row) != 4 for row in setting):
            raise ValueError(f"inverted_residual_setting rows must be (t, c, n, s), got {setting}")
        input_channel = _make_divisible(32 * width_mult, round_nearest)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [Conv2dNormActivation(in_channels, input_channel, stride=2)]
        for t, c, n, s in setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                stride = s if i == 0 else 1
                features.append(InvertedResidual(input_channel, output_channel, stride, t))
                input_channel = output_channel
        features.append(Conv2dNormActivation(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(self.last_channel, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, InvertedResidual) and m.use_res_connect:
                    nn.init.zeros_(m.conv[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


def mobilenet_v2(
    num_classes: int = 1000,
    width_mult: float = 1.0,
    round_nearest: int = 8,
    dropout: float = 0.2,
    in_channels: int = 3,
    zero_init_residual: bool = False,
) -> MobileNetV2:
    """Build torchvision's MobileNetV2 (randomly initialised; nothing is downloaded).

    Args:
        num_classes: number of output logits (3,504,872 parameters at 1000 classes, width 1.0).
        width_mult: channel multiplier, e.g. 0.5 for a ~4x cheaper network.
        round_nearest: channel rounding multiple.
        dropout: classifier dropout probability.
        in_channels: image channels.
        zero_init_residual: zero-initialise the last BatchNorm of each residual block.
    """
    return MobileNetV2(
        num_classes=num_classes,
        width_mult=width_mult,
        round_nearest=round_nearest,
        dropout=dropout,
        in_channels=in_channels,
        zero_init_residual=zero_init_residual,
    )
