"""The torch side of the chain: fuse, int8 per engine, prune, rebuild, and .ptl export."""

from __future__ import annotations

import io

import pytest
import torch

from mobileforge import capabilities
from mobileforge.export.ptl import BackendUnavailable, export_ptl
from mobileforge.fuse import fuse
from mobileforge.models import build_model
from mobileforge.prune.unstructured import prunable_layers, prune_quantized, weight_sparsity
from mobileforge.quantize.fx import quantize_static, quantized_engine, rebuild_quantized
from mobileforge.quantize.recipe import Recipe
from mobileforge.runtime.evaluate import collect_logits


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model("tinycnn", 10, {"width": 8})
    # Non-trivial BN statistics, so fusion has something to fold.
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(16, 3, 16, 16) * 2 + 0.5)
    return net.eval()


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return torch.randn(64, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_fusion_preserves_outputs_and_removes_batchnorm(model, inputs):
    fused = fuse(model)
    with torch.no_grad():
        diff = (collect_logits(model, inputs, 64) - collect_logits(fused, inputs, 64)).abs().max()
    assert diff < 1e-4
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_int8_rebuilds_exactly_from_its_state_dict(model, inputs, engine):
    fused = fuse(model)
    quantized, seen = quantize_static(
        fused, engine, Recipe(calibration_batches=2, batch_size=16), inputs
    )
    assert seen == 32
    with quantized_engine(engine):
        expected = quantized(inputs)
        buffer = io.BytesIO()
        torch.save(quantized.state_dict(), buffer)
        buffer.seek(0)
        state_dict = torch.load(buffer, weights_only=True)
        rebuilt = rebuild_quantized(fuse(model), engine, Recipe(), inputs[:1], state_dict)
        assert torch.equal(rebuilt(inputs), expected)
    # int8 stays close to fp32 on the calibration distribution.
    assert (expected - model(inputs)).abs().max() < 0.5


def test_prune_zeroes_smallest_int8_weights_and_keeps_the_rest(model, inputs):
    quantized, _ = quantize_static(
        fuse(model), "x86", Recipe(calibration_batches=2, batch_size=16), inputs
    )
    with quantized_engine("x86"):
        before = {name: layer.weight() for name, layer in prunable_layers(quantized)}
        stats = prune_quantized(quantized, 0.3, "l1_unstructured")
        after = {name: layer.weight() for name, layer in prunable_layers(quantized)}
    assert 0.3 <= stats["sparsity"] < 0.35
    assert stats["sparsity"] == pytest.approx(weight_sparsity(quantized))
    for name, old in before.items():
        new = after[name]
        changed = new.int_repr() != old.int_repr()
        assert torch.all(new.int_repr()[changed] == 0)
        kept = new.int_repr() != 0
        # Every surviving weight is at least as large as every pruned one.
        if changed.any() and kept.any():
            pruned_max = old.dequantize().abs()[changed].max()
            assert new.dequantize().abs()[kept].min() >= pruned_max
        assert torch.equal(new.q_per_channel_scales(), old.q_per_channel_scales())


def test_prune_rejects_amount_outside_unit_interval(model, inputs):
    quantized, _ = quantize_static(
        fuse(model), "x86", Recipe(calibration_batches=1, batch_size=16), inputs
    )
    with pytest.raises(ValueError, match="outside"):
        prune_quantized(quantized, 1.0, "l1_unstructured")


def _lite(data: bytes):
    from torch.jit.mobile import _load_for_lite_interpreter

    return _load_for_lite_interpreter(io.BytesIO(data))


def test_ptl_export_records_path_and_matches_eager(model, inputs):
    fused = fuse(model)
    data, info = export_ptl(fused, "cpu", inputs[:1], log=lambda _: None)
    available, _ = capabilities.mobile_optimizer("cpu")
    expected_paths = {"optimize_for_mobile", "torch.jit.freeze", "torch.jit.script (not frozen)"}
    assert info["optimization"] in expected_paths
    if not available:
        assert info["optimization"] != "optimize_for_mobile"
        assert "USE_XNNPACK" in info["optimize_for_mobile_unavailable"]
    assert len(data) == min(c["size_bytes"] for c in info["candidates"].values())
    with torch.no_grad():
        assert (_lite(data)(inputs) - model(inputs)).abs().max() < 1e-4


def test_int8_ptl_runs_in_lite_interpreter(model, inputs):
    quantized, _ = quantize_static(
        fuse(model), "x86", Recipe(calibration_batches=2, batch_size=16), inputs
    )
    with quantized_engine("x86"):
        data, _ = export_ptl(quantized, "cpu", inputs[:1], log=lambda _: None)
        assert torch.equal(_lite(data)(inputs), quantized(inputs))


@pytest.mark.parametrize(
    ("backend", "option"), [("vulkan", "USE_VULKAN"), ("metal", "USE_PYTORCH_METAL")]
)
def test_gpu_backend_missing_from_build_names_build_option(model, inputs, backend, option):
    available, _ = capabilities.mobile_optimizer(backend)
    if available:
        pytest.skip(f"this torch build has {backend}")
    with pytest.raises(BackendUnavailable, match=option):
        export_ptl(fuse(model), backend, inputs[:1])
