"""ResNet with BasicBlocks (He et al., 2016), parameter names identical to torchvision.

Written out here because torchvision is not a dependency; a torchvision ``resnet18`` state_dict
loads into :func:`resnet18` unchanged (11,689,512 parameters at 1000 classes). Two deliberate
differences that do not change the state_dict: each ReLU use is its own module (torchvision reuses
one), so every conv-bn-relu is a separate fusable pattern, and the residual sum is an out-of-place
``+`` that FX graph-mode quantization maps to a quantized add.
"""

# No ``from __future__ import annotations``: torch.fx copies the forward annotations into the
# generated code as strings that torch.jit.script cannot resolve (fuse_fx output fails to script).

import torch
from torch import nn

__all__ = ["ResNet", "BasicBlock", "resnet18", "resnet34"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding, no bias (BatchNorm follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias; used by the downsampling shortcut."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-bn layers with an identity (or 1x1 conv-bn) shortcut."""

    expansion: int = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out = out + identity
        return self.relu2(out)


class ResNet(nn.Module):
    """ResNet backbone: stem, four stages of residual blocks, global average pool, linear head.

    Args:
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        num_classes: number of output logits.
        zero_init_residual: start each block's last BN at zero so blocks begin as identities.
        small_input: replace the ImageNet stem (7x7 stride-2 conv + 3x3 stride-2 max-pool, i.e.
            /4 before the first stage) by a 3x3 stride-1 conv and no pool, the usual CIFAR-style
            stem for 32x32 inputs. Costs about 16x the compute at the same input size and changes
            ``conv1.weight``'s shape, so torchvision checkpoints no longer load. Default False.
        in_channels: image channels.
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int] = (2, 2, 2, 2),
        num_classes: int = 1000,
        zero_init_residual: bool = False,
        small_input: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must list blocks for 4 stages, got {layers}")
        self.inplanes = 64
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = (
            nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        )
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * BasicBlock.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * BasicBlock.expansion, stride),
                nn.BatchNorm2d(planes * BasicBlock.expansion),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        for _ in range(1, blocks):
            layers.append(BasicBlock(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def resnet18(
    num_classes: int = 1000,
    zero_init_residual: bool = False,
    small_input: bool = False,
    in_channels: int = 3,
) -> ResNet:
    """Build torchvision's ResNet-18 (randomly initialised; nothing is downloaded).

    Args:
        num_classes: number of output logits (11,689,512 parameters at 1000 classes).
        zero_init_residual: zero-initialise the last BN of each block.
        small_input: CIFAR-style 3x3 stride-1 stem without max-pool; see :class:`ResNet`.
        in_channels: image channels.
    """
    return ResNet((2, 2, 2, 2), num_classes, zero_init_residual, small_input, in_channels)


def resnet34(
    num_classes: int = 1000,
    zero_init_residual: bool = False,
    small_input: bool = False,
    in_channels: int = 3,
) -> ResNet:
    """Build torchvision's ResNet-34 (21,797,672 parameters at 1000 classes); see resnet18."""
    return ResNet((3, 4, 6, 3), num_classes, zero_init_residual, small_input, in_channels)
