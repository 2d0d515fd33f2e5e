"""Pruning that pays: sweep points, channel pruning (user and zoo models), per-layer amounts by
sensitivity within a budget, non-cumulative pruning of both int8 formats, compressed size."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from mobileforge import chain, plan
from mobileforge.files import compressed_size
from mobileforge.fuse import fuse
from mobileforge.macs import count_macs
from mobileforge.models import build_model
from mobileforge.prune.allocation import GRID, Target, allocate, fit_budget
from mobileforge.prune.channel import prune_channels, pruned_structure, resize
from mobileforge.prune.pt2e import ConvertedLayers, prune_converted
from mobileforge.prune.unstructured import QuantizedLayers, weight_sparsity
from mobileforge.quantize import fx, pt2e
from mobileforge.quantize.recipe import Recipe
from mobileforge.train import train_model
from tests.user_nets import build

SHAPE = (1, 3, 16, 16)
RECIPE = Recipe(calibration_batches=2, batch_size=16)


def _fused_user_net() -> nn.Module:
    torch.manual_seed(0)
    model = build()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *SHAPE[1:]))
    return fuse(model.eval())


def test_prune_points_name_every_method_and_amount_of_a_sweep():
    points = plan.prune_points({"method": ["channel", "l1_unstructured"], "amount": [0.5, 0.25]})
    assert [p.variant for p in points] == [
        "int8_pruned-l1_unstructured-0.25",
        "int8_pruned-l1_unstructured-0.5",
        "int8_pruned-channel-0.25",
        "int8_pruned-channel-0.5",
    ]
    assert [p.before_int8 for p in points] == [False, False, True, True]
    single = plan.prune_points({"method": "channel", "amount": 0.3})
    assert [p.variant for p in single] == ["int8_pruned-channel-0.3"]
    assert plan.fused_path("m", "int8_pruned-channel-0.3") == "results/m/pruned-channel-0.3.pt"


def test_channel_pruning_keeps_a_user_model_with_adds_cat_and_squeeze_excite_consistent():
    fused = _fused_user_net()
    x = torch.randn(4, *SHAPE[1:])
    macs = count_macs(fused, SHAPE)
    record = prune_channels(fused, torch.zeros(SHAPE), 0.5, log=lambda _: None)
    assert record["after"]["macs"] == count_macs(fused, SHAPE) < 0.9 * macs
    assert record["before"]["macs"] == macs
    assert fused(x).shape == (4, 10)  # classifier outputs kept
    assert set(record["kept_layers"]) == {"stem.0", "head"}
    # The first layer keeps its channels, and with it the residual stream its adds tie to it;
    # the branches inside each block lose half, concatenated and depthwise groups in step.
    assert fused.get_submodule("stem.0").out_channels == 16
    assert fused.get_submodule("blocks.0.project.0").out_channels == 16
    assert fused.get_submodule("blocks.0.left.0").out_channels == 4  # was 8
    left, right = (fused.get_submodule(f"blocks.0.{side}.0") for side in ("left", "right"))
    concatenated = left.out_channels + right.out_channels
    assert fused.get_submodule("blocks.0.se.reduce.0").in_channels == concatenated
    assert fused.get_submodule("blocks.0.se.expand").out_channels == concatenated
    assert fused.get_submodule("blocks.0.project.0").in_channels == concatenated
    # Saved as weights + structure, rebuilt from the architecture alone.
    state = fused.state_dict()
    rebuilt = resize(fuse(build().eval()), pruned_structure(fused))
    rebuilt.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), fused(x))
    # Both int8 paths and the exports still work on the pruned model.
    q, _ = fx.quantize_static(fused, "x86", RECIPE, torch.randn(32, *SHAPE[1:]))
    with fx.quantized_engine("x86"):
        torch.jit.script(q)(x)
    pt2e.quantize_pt2e(fused, torch.zeros(SHAPE), "xnnpack", torch.randn(32, *SHAPE[1:]))


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_channel_pruning_of_mobilenet_v2_cuts_macs_and_survives_the_chain(scope):
    torch.manual_seed(0)
    model = fuse(build_model("mobilenet_v2", 10, {"width_mult": 0.5}).eval())
    shape = (1, 3, 32, 32)
    record = prune_channels(model, torch.zeros(shape), 0.5, scope, log=lambda _: None)
    assert record["after"]["macs"] < 0.6 * record["before"]["macs"]
    assert record["after"]["params"] < record["before"]["params"]
    meta = {"arch": "mobilenet_v2", "num_classes": 10, "kwargs": {"width_mult": 0.5},
            "stage": "pruned", "pruned_structure": pruned_structure(model)}  # fmt: skip
    rebuilt = chain.rebuild_stage(model.state_dict(), meta)
    x = torch.randn(2, *shape[1:])
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    torch.export.export(model, (torch.zeros(shape),))


def test_round_to_leaves_every_pruned_layer_a_multiple_of_its_channels():
    def out_channels(model):
        return [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]

    shape = (1, 3, 32, 32)
    counts = {}
    for round_to in (None, 8):
        model = fuse(build_model("mobilenet_v2", 10, {"width_mult": 1.0}, seed=0))
        record = prune_channels(model, torch.zeros(shape), 0.3, round_to=round_to, log=print)
        assert record["round_to"] == round_to
        assert record["after"]["macs"] < 0.75 * record["before"]["macs"]
        counts[round_to] = out_channels(model)
    assert any(c % 8 for c in counts[None])  # 0.3 of 32, 96, 144, ... is not a multiple of 8
    assert all(c % 8 == 0 for c in counts[8])
    with pytest.raises(ValueError, match="round_to"):
        prune_channels(fuse(build_model("tinycnn", 10)), torch.zeros(shape), 0.3, round_to=0)


def test_distillation_fine_tuning_pulls_the_student_towards_the_teacher():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(48, 5)).eval()
    student = nn.Sequential(nn.Flatten(), nn.Linear(48, 5))
    x = torch.randn(256, 3, 4, 4)
    y = teacher(x).argmax(1).detach()

    def gap() -> float:
        with torch.no_grad():
            return float((student(x).softmax(1) - teacher(x).softmax(1)).abs().mean())

    before = gap()
    train_model(student, {"train_x": x, "train_y": y}, epochs=4, batch_size=32, lr=0.1, seed=0,
                teacher=teacher, distillation=1.0, temperature=2.0, log=lambda _: None,
                hflip=False, channels_last=False)  # fmt: skip
    assert gap() < 0.5 * before


def test_allocation_prunes_the_layers_that_mind_least_first():
    sizes = {"robust": 1000, "fragile": 1000}
    curves = {
        "robust": dict.fromkeys(GRID, 1e-4),
        "fragile": {amount: amount for amount in GRID},  # noise grows fast
    }
    chosen = allocate(curves, sizes, 0.3)
    assert chosen["robust"] >= 0.6 and "fragile" not in chosen
    assert allocate(curves, sizes, 0.0) == {}
    full = allocate(curves, sizes, 0.85)
    removed = sum(full.get(layer, 0) * size for layer, size in sizes.items())
    assert removed >= 0.85 * 2000


def _toy_target(loss_at: float) -> tuple[Target, dict]:
    """A target whose loss is ``loss_at`` points per unit of overall pruned share."""
    sizes = {"a": 100, "b": 100}
    state: dict = {}

    def prune(amounts):
        state["amounts"] = dict(amounts)
        return state

    def loss(model):
        share = sum(model["amounts"].get(k, 0) * n for k, n in sizes.items()) / 200
        return {"loss": loss_at * share}

    curves = {"a": dict.fromkeys(GRID, 0.1), "b": dict.fromkeys(GRID, 0.2)}
    return Target(sizes, prune, lambda m, x: torch.zeros(1), loss), curves


def test_fit_budget_backs_off_to_the_largest_amount_within_budget():
    target, curves = _toy_target(loss_at=4.0)  # 0.5 pruned -> 2 points
    model, record = fit_budget(target, curves, 0.5, 1.0, log=lambda _: None)
    assert record["within_budget"] and record["requested_amount"] == 0.5
    assert 0.15 <= record["amount"] <= 0.25  # 1 point is 0.25 of the weights
    assert model["amounts"] == record["layer_amounts"]  # the target is left at the choice
    _, easy = fit_budget(target, curves, 0.2, 1.0, log=lambda _: None)
    assert easy["amount"] == 0.2 and len(easy["steps"]) == 1


def test_fit_budget_says_when_no_amount_is_within_budget():
    target, curves = _toy_target(loss_at=400.0)
    _, record = fit_budget(target, curves, 0.3, 0.1, log=lambda _: None)
    assert not record["within_budget"] and record["amount"] == 0.3
    assert "no amount within the budget" in record["reason"]


@pytest.fixture(scope="module")
def int8_models():
    fused = _fused_user_net()
    calib = torch.randn(32, *SHAPE[1:])
    fx_model, _ = fx.quantize_static(fused, "x86", RECIPE, calib)
    converted, _ = pt2e.quantize_pt2e(fused, torch.zeros(SHAPE), "xnnpack", calib, RECIPE)
    return fx_model, converted


def test_quantized_layers_prune_from_their_originals_every_time(int8_models):
    fx_model = copy.deepcopy(int8_models[0])
    layers = QuantizedLayers(fx_model)
    name = next(iter(layers.sizes))
    original = fx_model.get_submodule(name).weight().int_repr().clone()
    with fx.quantized_engine("x86"):
        layers.apply({name: 0.5})
        first = fx_model.get_submodule(name).weight().int_repr().clone()
        layers.apply({name: 0.5})
        assert torch.equal(fx_model.get_submodule(name).weight().int_repr(), first)  # no creep
        assert int((first == 0).sum()) >= int(0.5 * first.numel())
        layers.apply({})
        assert torch.equal(fx_model.get_submodule(name).weight().int_repr(), original)
        assert weight_sparsity(fx_model) < 0.05


def test_converted_layers_prune_per_layer_and_restore(int8_models):
    converted = copy.deepcopy(int8_models[1])
    layers = ConvertedLayers(converted)
    assert len(layers.sizes) == 12  # the user net's quantizable layers
    before = layers.sparsity()
    name = max(layers.sizes, key=layers.sizes.get)
    layers.apply({name: 0.9})
    share = layers.sizes[name] / sum(layers.sizes.values())
    assert math.isclose(layers.sparsity() - before, 0.9 * share, abs_tol=0.02)
    layers.apply({})
    assert layers.sparsity() == before
    sparsity, record = prune_converted(converted, {"amount": 0.3, "layer_amounts": {name: 0.5}})
    assert record["amount"] == 0.3
    assert math.isclose(sparsity - before, 0.5 * share, abs_tol=0.02)


def test_compressed_size_is_what_zip_9_takes():
    import zipfile

    zeros, noise = bytes(100_000), torch.randint(0, 256, (100_000,), dtype=torch.uint8).numpy()
    assert compressed_size(zeros) < 1_000 < 100_000 < compressed_size(noise.tobytes())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("artifact", zeros)
    assert abs(compressed_size(zeros) - buffer.tell()) < 64  # same stream, same header sizes
    assert compressed_size(zeros) == compressed_size(zeros)  # no timestamps inside


def test_channel_pruning_an_attention_model_says_what_to_do_instead():
    from mobileforge.models.vit import vit
    from mobileforge.prune.channel import prune_channels

    model = vit(image_size=16, dim=32, depth=1, heads=2).eval()
    with pytest.raises(ValueError, match="prune.method: l1_unstructured"):
        prune_channels(model, torch.rand(1, 3, 16, 16), 0.3, log=lambda _: None)
