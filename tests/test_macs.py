"""MAC counts against the published figures of the architectures they come from."""

from __future__ import annotations

import pytest
from torch import nn

from mobileforge.fuse import fuse
from mobileforge.macs import count_macs
from mobileforge.models import build_model


@pytest.mark.parametrize(
    ("arch", "published"),
    [("mobilenet_v2", 300e6), ("resnet18", 1.814e9)],  # torchvision's model cards: 0.30 / 1.81 G
)
def test_zoo_macs_match_published_counts_at_224(arch, published):
    model = build_model(arch, 1000, {})
    macs = count_macs(model, [1, 3, 224, 224])
    assert abs(macs - published) / published < 0.02, macs
    assert count_macs(fuse(model), [1, 3, 224, 224]) == macs  # folding BN adds no MACs


def test_depthwise_and_linear_are_counted_at_their_real_cost():
    model = nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),  # depthwise: 8*3*3 MACs per pixel
        nn.Conv2d(8, 4, 1, bias=False),  # pointwise: 8*4 per pixel
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 10),
    )
    assert count_macs(model, [2, 8, 5, 5]) == 2 * (25 * 8 * 9 + 25 * 8 * 4 + 100 * 10)
    assert model.training  # left as it was found
