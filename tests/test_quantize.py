"""int8 for both formats: observers, clamp-aware ranges, per-layer sensitivity, the accuracy budget
and fp32 fallback, on a user model with residual adds, a concatenation, hardswish and a
squeeze-excite multiply (tests/user_nets.py)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from mobileforge.fuse import fuse
from mobileforge.quantize import fx, pt2e
from mobileforge.quantize.budget import choose_reduce_range, keep_within_budget, measure
from mobileforge.quantize.clamps import make_clamp_aware
from mobileforge.quantize.layers import quantizable_layers
from mobileforge.quantize.observers import fx_activation_observer, pt2e_activation_observer
from mobileforge.quantize.recipe import Recipe
from mobileforge.quantize.sensitivity import layer_sensitivity, sqnr_db
from mobileforge.runtime.evaluate import collect_logits
from tests.user_nets import build

pytest.importorskip("executorch")

SHAPE = (1, 3, 16, 16)
# Layers of UserNet whose input and output tensors feed nothing else and share no qparams.
PRIVATE_TENSORS = {"stem.0", "blocks.0.project.0", "blocks.1.project.0", "blocks.0.se.expand",
                   "blocks.1.se.expand"}  # fmt: skip
RECIPE = Recipe(calibration_batches=4, batch_size=16)
# Where a test compares FX's real x86 kernels with exact expectations: 7-bit activations, which
# cannot overflow fbgemm's 16-bit sums on CPUs without VNNI (8-bit ones can, e.g. on AVX2 parts).
RECIPE_X86 = dataclasses.replace(RECIPE, reduce_range=True)


@pytest.fixture(scope="module")
def fused() -> torch.fx.GraphModule:
    torch.manual_seed(0)
    model = build()
    model.train()
    with torch.no_grad():  # BatchNorm statistics that fusion actually folds
        for _ in range(4):
            model(torch.randn(32, *SHAPE[1:]))
    return fuse(model.eval())


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(64, *SHAPE[1:])


def _real_alone_fx(fused: nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    """Logits of the FX int8 model in which only ``layer`` is quantized (the ground truth)."""
    from torch.ao.quantization import QConfigMapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    qconfig = fx.qconfig_mapping("x86", RECIPE_X86).global_qconfig
    mapping = QConfigMapping().set_module_name(layer, qconfig)
    with fx.quantized_engine("x86"):
        import copy

        prepared = prepare_fx(copy.deepcopy(fused), mapping, (images[:1],))
        make_clamp_aware(prepared)
        fx.calibrate(prepared, images, RECIPE_X86)
        return collect_logits(convert_fx(prepared), images, 64)


def test_user_model_layers_are_found_and_named_as_modules(fused):
    layers = quantizable_layers(fused)
    assert "head" in layers and "stem.0" in layers
    assert layers["blocks.0.se.reduce"] == "ConvReLU2d"  # fused conv+relu counts as one layer
    assert len(layers) == 12  # stem, 5 convs per block, head
    assert all(not name.endswith(".0.0") or name.count(".") < 3 for name in layers)


@pytest.mark.slow
def test_fx_sensitivity_is_the_damage_of_each_layer_quantized_alone(fused, images):
    """The one-calibration simulation against really converting each layer alone with FX.

    Where a layer's input and output tensors are its own, both quantize them with the same
    qparams and agree to a fraction of a dB. Elsewhere the simulation quantizes them as the full
    int8 model does (a pooled tensor shares the wider range of its input; an input feeding a
    residual add too is quantized for both), which is never less damage than converting the
    layer in isolation.
    """
    with fx.quantized_engine("x86"):
        prepared = fx.prepare(fused, "x86", RECIPE_X86, images[:1])
        fx.calibrate(prepared, images, RECIPE_X86)
        weight_observer = fx.qconfig_mapping("x86", RECIPE_X86).global_qconfig.weight
        ranked = layer_sensitivity(prepared, fused, images, weight_observer)
    assert [r["rank"] for r in ranked] == list(range(1, 13))
    assert {r["layer"] for r in ranked} == set(quantizable_layers(fused))
    assert [r["sqnr_db"] for r in ranked] == sorted(r["sqnr_db"] for r in ranked)
    reference = collect_logits(fused, images, 64)
    simulated = {r["layer"]: r["sqnr_db"] for r in ranked}
    for layer in simulated:
        real = sqnr_db(reference, _real_alone_fx(fused, layer, images))
        if layer in PRIVATE_TENSORS:
            assert simulated[layer] == pytest.approx(real, abs=0.5), layer
        else:
            assert simulated[layer] <= real + 0.5, layer


@pytest.mark.slow
def test_pt2e_sensitivity_covers_the_same_layers_and_spots_a_broken_one(fused, images):
    """A layer given one huge weight (a per-tensor scale then zeroes all its others) ranks first.

    The huge weights feed a channel the ReLU6 after it kills, so the fp32 model, and every other
    layer's damage, stay as they were: only quantizing that layer hurts.
    """
    import copy

    dead = copy.deepcopy(fused)
    with torch.no_grad():  # channel 0 of this grouped conv: always negative, so ReLU6 gives 0
        dead.get_submodule("blocks.1.right.0").bias[0] = -1e9
    broken = copy.deepcopy(dead)
    with torch.no_grad():
        broken.get_submodule("blocks.1.right.0").weight[0] *= 1000
        assert torch.equal(broken(images), dead(images))
    recipe = Recipe(per_channel=False, calibration_batches=4, batch_size=16)
    prepared, info = pt2e.prepare_pt2e_model(broken, torch.zeros(SHAPE), "xnnpack", images, recipe)
    assert info["calibration_samples"] == 64
    ranked = layer_sensitivity(prepared, broken, images)
    assert {r["layer"] for r in ranked} == set(quantizable_layers(fused))
    assert ranked[0]["layer"] == "blocks.1.right.0"
    assert ranked[0]["sqnr_db"] < ranked[1]["sqnr_db"] - 6
    # Every layer was really switched on: none reads as untouched (infinite SQNR).
    assert all(math.isfinite(r["sqnr_db"]) for r in ranked)


def test_fx_fallback_keeps_the_layer_float_and_rebuilds_identically(fused, images):
    recipe = RECIPE.with_fp32_layers(("head", "blocks.0.project.0"))
    model, seen = fx.quantize_static(fused, "x86", recipe, images)
    assert seen == 64
    assert type(model.get_submodule("head")) is nn.Linear  # float, not quantized Linear
    assert type(model.get_submodule("blocks.0.project.0")) is nn.Conv2d
    assert "Quantized" in type(model.get_submodule("stem.0")).__name__ or hasattr(
        model.get_submodule("stem.0"), "scale"
    )
    rebuilt = fx.rebuild_quantized(fused, "x86", recipe, images[:1], model.state_dict())
    with fx.quantized_engine("x86"):
        assert torch.equal(collect_logits(model, images, 64), collect_logits(rebuilt, images, 64))
        scripted = torch.jit.script(model)  # still exports to the lite interpreter
        assert torch.equal(scripted(images[:2]), model(images[:2]))


def test_pt2e_fallback_leaves_the_layer_float(fused, images):
    kept = ("head",)
    converted, _ = pt2e.quantize_pt2e(
        fused, torch.zeros(SHAPE), "xnnpack", images, RECIPE.with_fp32_layers(kept)
    )
    linears = [n for n in converted.graph.nodes if getattr(n.target, "_opname", "") == "linear"]
    assert len(linears) == 1
    weight = linears[0].args[1]
    assert weight.op == "get_attr"  # a float parameter, not int8 + dequantize
    assert not any("quantize" in str(user.target) for user in linears[0].users)  # fp32 out
    convs = [n for n in converted.graph.nodes if getattr(n.target, "_opname", "") == "conv2d"]
    assert convs and all("dequantize" in str(c.args[1].target) for c in convs)  # int8 weights


@pytest.mark.slow
def test_fallback_exports_to_both_formats(fused, images, tmp_path):
    from mobileforge.export import pte
    from mobileforge.runtime import pte as pte_runtime

    recipe = RECIPE.with_fp32_layers(("head",))
    buffer, info = pte.export_pte(fused, torch.zeros(SHAPE), "xnnpack", "int8", images, recipe)
    path = tmp_path / "m.pte"
    path.write_bytes(buffer)
    out = pte_runtime.run_pte(pte_runtime.load_pte(path), images[:1])
    converted, _ = pt2e.quantize_pt2e(fused, torch.zeros(SHAPE), "xnnpack", images, recipe)
    with torch.no_grad():
        assert (out - converted(images[:1])).abs().max() < 0.05 * converted(images[:1]).abs().max()
    # The fp32 head runs in XNNPACK's float kernels: fallback puts nothing on portable kernels.
    assert info["portable_nodes"] == 0 and info["delegated_subgraphs"] >= 1


def test_clamp_aware_ranges_stop_at_the_clamp_and_change_no_fp32_value():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 4, 1)).eval()
    with torch.no_grad():
        model[0].bias.fill_(3.0)  # outputs spread well beyond [0, 6]
    fused_model = fuse(model)
    x = torch.randn(32, 3, 8, 8) * 4
    with fx.quantized_engine("x86"):
        loose_recipe = Recipe(clamp_aware=False, reduce_range=True)  # see RECIPE_X86
        prepared = fx.prepare(fused_model, "x86", loose_recipe, x[:1])
        plain = fx.prepare(fused_model, "x86", loose_recipe, x[:1])
        chosen = make_clamp_aware(prepared)
        # The conv output feeding ReLU6 and the ReLU6 output (one shared observer), nothing else.
        assert set(chosen.values()) == {(0.0, 6.0)}
        objects = {id(prepared.get_submodule(name)) for name in chosen}
        assert len(objects) == 1
        with torch.no_grad():
            assert torch.equal(prepared(x), plain(x)) and torch.equal(prepared(x), model(x))
        observer = prepared.get_submodule(next(iter(chosen)))
        assert float(observer.min_val) >= 0.0 and float(observer.max_val) <= 6.0
        assert float(plain.get_submodule(next(iter(chosen))).max_val) > 6.0
        clamped = fx.convert(prepared)
        loose = fx.convert(plain)
        reference = model(x)
        error = lambda m: float((collect_logits(m, x, 32) - reference).pow(2).mean())  # noqa: E731
        assert error(clamped) < error(loose)


def test_clamp_aware_leaves_an_observer_with_other_consumers_alone():
    class Branch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.act = nn.ReLU6()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.act(y) + y  # y also feeds the add: clamping its range would be wrong

    x = torch.randn(8, 3, 4, 4) * 5
    with fx.quantized_engine("x86"):
        prepared = fx.prepare(fuse(Branch()), "x86", Recipe(clamp_aware=False), x[:1])
        assert make_clamp_aware(prepared) == {}


@pytest.mark.parametrize("api", ["fx", "pt2e"])
def test_observer_choices(api):
    make = fx_activation_observer if api == "fx" else pt2e_activation_observer
    x = torch.cat([torch.linspace(0, 1, 100_000), torch.tensor([50.0])])  # one far outlier
    ranges = {}
    for name in ("minmax", "histogram", "percentile"):
        observer = make(name, 99.9)()
        observer(x)
        scale, _ = observer.calculate_qparams()
        ranges[name] = float(scale) * 255
    assert ranges["minmax"] == pytest.approx(50.0, rel=0.01)  # the outlier sets the range
    assert ranges["percentile"] < 2.0  # 99.9 % of the mass lies in [0, 1]
    assert ranges["histogram"] < ranges["minmax"]


def test_budget_keeps_layers_in_sensitivity_order_until_within():
    labels = torch.arange(100) % 10
    fp32 = torch.nn.functional.one_hot(labels, 10).float()
    calls = []

    def quantize(kept):
        calls.append(kept)
        logits = fp32.clone()
        wrong = 5 - 2 * len(kept)  # each kept layer fixes two images
        logits[: max(0, wrong), :] = torch.roll(fp32[: max(0, wrong)], 1, dims=1)
        return logits

    model, record = keep_within_budget(
        quantize, lambda m: m, fp32, labels, ["a", "b", "c", "d"], 2.0, 5, log=lambda _: None
    )
    assert calls == [(), ("a",), ("a", "b")]
    assert record["fp32_layers"] == ["a", "b"] and record["budget_met"]
    assert [step["loss"] for step in record["steps"]] == [5.0, 3.0, 1.0]
    _, capped = keep_within_budget(
        quantize, lambda m: m, fp32, labels, ["a", "b", "c"], 0.0, 1, log=lambda _: None
    )
    assert not capped["budget_met"] and capped["fp32_layers"] == ["a"]
    assert "not met" in capped["reason"] and "max_fp32_layers" in capped["reason"]
    _, none = keep_within_budget(
        quantize, lambda m: m, fp32, labels, [], None, 5, log=lambda _: None
    )
    assert none["fp32_layers"] == [] and len(none["steps"]) == 1


def test_budget_returns_a_layer_to_int8_when_keeping_it_fp32_did_not_lower_the_loss():
    labels = torch.arange(100) % 10
    fp32 = torch.nn.functional.one_hot(labels, 10).float()
    fixes = {"a": 0, "b": 2, "c": 2, "d": 2}  # images each layer in fp32 puts right
    calls = []

    def quantize(kept):
        calls.append(kept)
        logits = fp32.clone()
        wrong = 5 - sum(fixes[layer] for layer in kept)
        logits[:wrong, :] = torch.roll(fp32[:wrong], 1, dims=1)
        return logits

    model, record = keep_within_budget(
        quantize, lambda m: m, fp32, labels, ["a", "b", "c", "d"], 2.0, 5, log=lambda _: None
    )
    assert calls == [(), ("a",), ("b",), ("b", "c")]
    assert record["fp32_layers"] == ["b", "c"] and record["budget_met"]
    assert [step["kept"] for step in record["steps"]] == [True, False, True, True]
    assert "went back to int8" in record["reason"]
    assert torch.equal(model, quantize(("b", "c")))
    # Nothing helps: the all-int8 model stays, and the record says the budget was not met.
    fixes.update(b=0, c=0, d=0)
    _, stuck = keep_within_budget(
        quantize, lambda m: m, fp32, labels, ["a", "b", "c", "d"], 2.0, 1, log=lambda _: None
    )
    assert stuck["fp32_layers"] == [] and not stuck["budget_met"]
    assert "not met" in stuck["reason"]
    assert len(stuck["steps"]) == 3  # all-int8, then at most 2 x max_fp32_layers tried


@pytest.mark.parametrize(
    "wrong_8bit, wrong_7bit, expected", [(5, 1, True), (1, 5, False), (2, 2, False)]
)
def test_reduce_range_auto_keeps_the_activation_width_that_loses_less(
    wrong_8bit, wrong_7bit, expected
):
    labels = torch.arange(100) % 10
    fp32 = torch.nn.functional.one_hot(labels, 10).float()

    def quantize(reduce_range):
        wrong = wrong_7bit if reduce_range else wrong_8bit
        logits = fp32.clone()
        logits[:wrong] = torch.roll(fp32[:wrong], 1, dims=1)
        return logits

    chosen, record, first = choose_reduce_range(
        quantize, lambda m: m, fp32, labels, log=lambda _: None
    )
    assert chosen is expected and record["chosen"] is expected  # 8-bit on a tie
    assert (record["8-bit"]["loss"], record["7-bit"]["loss"]) == (wrong_8bit, wrong_7bit)
    assert f"kept {7 if expected else 8}-bit" in record["reason"]
    assert torch.equal(first[0], quantize(expected)) and torch.equal(first[1], first[0])
    # The budget's first step is that model, not a second calibration of it.
    calls = []
    _, budget = keep_within_budget(
        lambda kept: calls.append(kept), lambda m: m, fp32, labels, [], None, 5,
        log=lambda _: None, first=first,
    )  # fmt: skip
    kept_width = record[f"{7 if expected else 8}-bit"]
    assert calls == [] and budget["steps"][0]["loss"] == kept_width["loss"]


def test_reduce_range_auto_reaches_only_the_int8_job_as_a_choice():
    # Elsewhere (the simulated sensitivity ranking) "auto" means 8 bits.
    assert Recipe.from_settings({"reduce_range": "auto"}).reduce_range is False
    assert Recipe.from_settings({"reduce_range": True}).reduce_range is True


def test_budget_without_labels_counts_every_changed_prediction():
    fp32 = torch.eye(4).repeat(25, 1)
    int8 = fp32.clone()
    int8[:3] = torch.roll(int8[:3], 1, dims=1)
    record = measure(fp32, int8, None)
    assert record["loss"] == pytest.approx(3.0) and "accuracy" not in record
    labelled = measure(fp32, int8, fp32.argmax(1))
    assert labelled["loss"] == pytest.approx(3.0) and labelled["loss_stderr"] > 0
