"""The dynamic int8 recipe (``int8_dynamic``) of both formats on a small attention model
(tests/attention_nets.py): .ptl with dynamic quantized linear layers and static int8 convolutions
that the lite interpreter runs, and a .pte whose dynamic linear layers XNNPACK runs."""

from __future__ import annotations

import pytest
import torch
import torch.jit.mobile  # noqa: F401  (the lite interpreter's loader)
from torch.ao.nn.quantized import Conv2d as QuantizedConv2d
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

from mobileforge.export.ptl import export_ptl
from mobileforge.fuse import fuse
from mobileforge.quantize import fx
from mobileforge.quantize.layers import linear_layers
from mobileforge.quantize.recipe import Recipe
from tests.attention_nets import build

RECIPE = Recipe(calibration_batches=2, batch_size=16).made_dynamic()


@pytest.fixture(scope="module")
def setup() -> dict:
    torch.manual_seed(0)
    model = fuse(build(dim=32, depth=1, heads=4).eval())
    return {"model": model, "calib": torch.rand(32, 3, 16, 16), "x": torch.rand(4, 3, 16, 16)}


def _close(out: torch.Tensor, ref: torch.Tensor, share: float) -> bool:
    return bool((out - ref).abs().max() <= share * ref.abs().max())


def test_the_recipe_records_dynamic_only_when_it_is():
    assert "dynamic" not in Recipe().as_record()  # static records are as they were
    assert Recipe.from_record(RECIPE.as_record()) == RECIPE


@pytest.mark.parametrize("engine", fx.ENGINES)
def test_ptl_dynamic_keeps_convs_static_and_runs_in_the_lite_interpreter(setup, engine, tmp_path):
    model, x = setup["model"], setup["x"]
    quantized, seen = fx.quantize_static(model, engine, RECIPE, setup["calib"])
    assert seen == 32
    kinds = {name: type(module) for name, module in quantized.named_modules()}
    dynamic = [name for name, kind in kinds.items() if kind is DynamicLinear]
    assert dynamic == linear_layers(model) and len(dynamic) == 5  # qkv, proj, fc1, fc2, head
    assert kinds["embed"] is QuantizedConv2d  # the patch embedding stays static int8
    with fx.quantized_engine(engine):
        data, _ = export_ptl(quantized, "cpu", x[:1], log=lambda *_: None)
        path = tmp_path / "m.ptl"
        path.write_bytes(data)
        lite = torch.jit.mobile._load_for_lite_interpreter(str(path))
        operators = torch.jit.mobile._export_operator_list(lite)
        assert {"quantized::linear_dynamic", "quantized::conv2d.new"} <= operators
        out = lite(x)
        assert torch.allclose(out, quantized(x), atol=1e-5)
        # Rebuilt from its state_dict as the export job rebuilds it.
        rebuilt = fx.rebuild_quantized(model, engine, RECIPE, x[:1], quantized.state_dict())
        assert torch.equal(rebuilt(x), quantized(x))
    with torch.no_grad():
        assert _close(out, model(x), 0.1)


def test_a_layer_the_budget_keeps_in_fp32_is_neither_static_nor_dynamic(setup):
    recipe = RECIPE.with_fp32_layers(("blocks.0.fc1",))
    quantized, _ = fx.quantize_static(setup["model"], "x86", recipe, setup["calib"])
    assert type(quantized.get_submodule("blocks.0.fc1")) is torch.nn.Linear
    assert type(quantized.get_submodule("blocks.0.fc2")) is DynamicLinear
    assert "blocks.0.fc1" not in linear_layers(setup["model"], recipe.fp32_layers)


def test_pte_dynamic_lowers_to_xnnpack_and_runs_close_to_fp32(setup, tmp_path):
    pytest.importorskip("executorch")
    from mobileforge.export import pte
    from mobileforge.quantize.pt2e import quantize_pt2e, quantizer
    from mobileforge.runtime import pte as pte_runtime

    model, x = setup["model"], setup["x"]
    converted, info = quantize_pt2e(model, x[:1], "xnnpack", setup["calib"], RECIPE)
    assert info["quantizer"]["is_dynamic"] is True
    buffer, lowering = pte.lower(converted, x[:1], "xnnpack", "int8")
    assert lowering["delegate_backend_ids"] == ["XnnpackBackend"]
    ops = lowering["delegated_ops"]
    # Every linear layer runs in XNNPACK, its activations quantized per call; what is left on
    # portable kernels (LayerNorm, mean) is what the fp32 program leaves there too.
    assert ops["aten.linear.default"] == 5 and ops["aten.convolution.default"] == 1
    assert ops["quantized_decomposed.choose_qparams.tensor"] == 5
    # Nothing static: the patch embedding and the adds stay fp32 (faster: pt2e._xnnpack_dynamic).
    assert "quantized_decomposed.quantize_per_tensor.default" not in ops
    assert not [op for op in lowering["portable_ops"] if "linear" in op or "quantize" in op]
    path = tmp_path / "m.pte"
    path.write_bytes(buffer)
    program = pte_runtime.load_pte(path)
    with torch.no_grad():
        for image in x:
            out = pte_runtime.run_pte(program, image[None]).clone()
            assert _close(out, converted(image[None]), 0.02)
            assert _close(out, model(image[None]), 0.1)
    with pytest.raises(ValueError, match="only xnnpack"):
        quantizer("vulkan", RECIPE)
