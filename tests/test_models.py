"""Model zoo: arch resolution, exact torchvision shapes, and every deployment path we rely on.

Each zoo model must trace with torch.fx, fuse and quantize with FX graph mode for both int8
engines, script after fusion/conversion, and export with torch.export - on small inputs so the
file stays fast.
"""

import copy
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
import torch.ao.nn.quantized as nnq
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, fuse_fx, prepare_fx

from mobileforge.models import ZOO, build_model, is_import_path, resolve_arch

# Small but real configurations of the defaults of the workflow.
CONFIGS = {
    "tinycnn": ("tinycnn", {}),
    "mobilenet_v2": ("mobilenet_v2", {"width_mult": 0.5}),
    "resnet18": ("resnet18", {}),
    "resnet18_small_input": ("resnet18", {"small_input": True}),
    "vit": ("vit", {}),
}
INPUT = (2, 3, 32, 32)


@pytest.fixture(autouse=True)
def _quiet_deprecations():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _model(name: str, num_classes: int = 10) -> torch.nn.Module:
    arch, kwargs = CONFIGS[name]
    return build_model(arch, num_classes, kwargs, seed=0)


def _calibrated_input() -> torch.Tensor:
    return torch.randn(INPUT, generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- arch strings


def test_models_package_does_not_import_torch():
    code = textwrap.dedent(
        """
        import sys
        import mobileforge.models as m
        assert m.resolve_arch("tinycnn") == m.ZOO["tinycnn"]
        assert m.is_import_path("pkg.mod:build")
        assert "torch" not in sys.modules, "importing mobileforge.models imported torch"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("pkg.mod:build", True),
        ("pkg:build", True),
        ("a.b.c:Factory.create", True),
        ("tinycnn", False),
        ("pkg.mod:", False),
        (":build", False),
        ("pkg/mod:build", False),
        ("pkg.mod:build:x", False),
        ("1pkg:build", False),
    ],
)
def test_is_import_path(arch, expected):
    assert is_import_path(arch) is expected


def test_resolve_arch():
    assert resolve_arch("mobilenet_v2") == "mobileforge.models.mobilenetv2:mobilenet_v2"
    assert resolve_arch("my.pkg:net") == "my.pkg:net"
    assert set(ZOO) >= {"tinycnn", "mobilenet_v2", "resnet18"}
    with pytest.raises(ValueError) as err:
        resolve_arch("resnet19")
    assert str(err.value) == (
        "unknown arch 'resnet19': expected one of tinycnn, mobilenet_v2, resnet18, resnet34, vit "
        "or 'package.module:callable'"
    )


# ----------------------------------------------------------------------------- build_model


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "usernets.py").write_text(
        textwrap.dedent(
            """
            import torch

            NOT_CALLABLE = 3

            def build(num_classes, hidden=4):
                layers = [torch.nn.Linear(12, hidden), torch.nn.Linear(hidden, num_classes)]
                return torch.nn.Sequential(torch.nn.Flatten(), *layers)

            def not_a_module(num_classes):
                return "nope"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "usernets"
    sys.modules.pop("usernets", None)


def test_build_model_user_builder(user_module):
    model = build_model(f"{user_module}:build", 5, {"hidden": 7})
    assert not model.training
    assert model(torch.zeros(1, 3, 2, 2)).shape == (1, 5)
    assert model[1].out_features == 7  # kwargs reached the builder


@pytest.mark.parametrize(
    ("arch", "kwargs", "reason"),
    [
        ("nosuchpkg_xyz.mod:build", None, "cannot import module 'nosuchpkg_xyz.mod'"),
        ("{mod}:missing", None, "has no attribute 'missing'"),
        ("{mod}:NOT_CALLABLE", None, "not a callable model builder"),
        ("{mod}:not_a_module", None, "returned str, expected a torch.nn.Module"),
        ("{mod}:build", {"bogus": 1}, "rejected arguments"),
    ],
)
def test_build_model_errors_name_arch_and_reason(user_module, arch, kwargs, reason):
    arch = arch.format(mod=user_module)
    with pytest.raises(ValueError) as err:
        build_model(arch, 3, kwargs)
    assert f"arch {arch!r}" in str(err.value)
    assert reason in str(err.value)


def test_build_model_seed_is_reproducible_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a = build_model("tinycnn", 10, seed=3).state_dict()
    b = build_model("tinycnn", 10, seed=3).state_dict()
    c = build_model("tinycnn", 10, seed=4).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


# ----------------------------------------------------------------------------- architectures


def test_mobilenet_v2_matches_torchvision():
    model = build_model("mobilenet_v2", 1000)
    assert _params(model) == 3_504_872
    sd = model.state_dict()
    # A few torchvision state_dict entries, so that torchvision checkpoints load unchanged.
    assert sd["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert sd["features.1.conv.0.0.weight"].shape == (32, 1, 3, 3)
    assert sd["features.1.conv.1.weight"].shape == (16, 32, 1, 1)
    assert sd["features.17.conv.0.0.weight"].shape == (960, 160, 1, 1)
    assert sd["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert sd["classifier.1.weight"].shape == (1000, 1280)
    assert len(sd) == 314
    assert isinstance(model.features[2].conv[1][2], torch.nn.ReLU6)


def test_mobilenet_v2_width_and_zero_init():
    half = build_model("mobilenet_v2", 10, {"width_mult": 0.5})
    assert half.features[0][0].out_channels == 16
    assert half.last_channel == 1280
    zero = build_model("mobilenet_v2", 10, {"width_mult": 0.5, "zero_init_residual": True})
    residual_bns = [m.conv[-1] for m in zero.modules() if getattr(m, "use_res_connect", False)]
    assert residual_bns and all(float(bn.weight.abs().sum()) == 0 for bn in residual_bns)


def test_resnet_matches_torchvision():
    model = build_model("resnet18", 1000)
    assert _params(model) == 11_689_512
    sd = model.state_dict()
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert "layer2.0.downsample.1.running_var" in sd
    assert sd["layer4.1.conv2.weight"].shape == (512, 512, 3, 3)
    assert sd["fc.weight"].shape == (1000, 512)
    assert len(sd) == 122
    assert isinstance(model.maxpool, torch.nn.MaxPool2d)
    assert _params(build_model("resnet34", 1000)) == 21_797_672


def test_resnet_small_input_stem():
    model = build_model("resnet18", 10, {"small_input": True})
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    feats = {}

    def record(module, inputs, output):
        feats["l4"] = output.shape

    model.layer4.register_forward_hook(record)
    model(torch.zeros(1, 3, 32, 32))
    assert feats["l4"][-2:] == (4, 4)  # /8 instead of /32


def test_vit_size_and_structure():
    from mobileforge.macs import count_macs

    model = build_model("vit", 10)
    # dim 128, 4 blocks of q/k/v/proj + MLP (ratio 2) on 64 tokens, attention's two matmuls, the
    # patch conv and the head: the ~40 M MACs the issue sizes a small transformer at.
    tokens, dim, hidden = 64, 128, 256
    block = tokens * (4 * dim * dim + 2 * dim * hidden) + 2 * tokens * tokens * dim
    assert count_macs(model, (1, 3, 32, 32)) == 4 * block + tokens * dim * 48 + dim * 10
    assert _params(model) == 545_930
    assert model.pos_embed.shape == (1, 64, 128)
    kinds = {type(m) for m in model.modules()}
    assert torch.nn.MultiheadAttention not in kinds  # quantizers do not look inside it
    assert {torch.nn.LayerNorm, torch.nn.GELU, torch.nn.Linear} <= kinds
    smaller = build_model("vit", 10, {"image_size": 16, "dim": 64, "depth": 2, "heads": 2})
    assert smaller(torch.zeros(1, 3, 16, 16)).shape == (1, 10)
    with pytest.raises(ValueError, match="not divisible by heads"):
        build_model("vit", 10, {"dim": 100, "heads": 3})
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        build_model("vit", 10, {"image_size": 30})


@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_shapes_and_grayscale(name):
    model = _model(name, num_classes=7)
    assert not model.training
    assert model(torch.zeros(INPUT)).shape == (2, 7)
    arch, kwargs = CONFIGS[name]
    gray = build_model(arch, 3, {**kwargs, "in_channels": 1})
    assert gray(torch.zeros(1, 1, 32, 32)).shape == (1, 3)


# ----------------------------------------------------------------------------- deployment paths


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fx_trace_fuse_and_script(name):
    model = _model(name)
    x = _calibrated_input()
    expected = model(x)
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(x), expected)
    fused = fuse_fx(copy.deepcopy(model))
    kinds = {type(m).__name__ for m in fused.modules()}
    assert "BatchNorm2d" not in kinds, "every BatchNorm must fold into its conv"
    # MobileNetV2 uses ReLU6, which is not fused into the conv; the ViT's patch conv has no ReLU.
    if name not in ("mobilenet_v2", "vit"):
        assert "ConvReLU2d" in kinds
    if name == "tinycnn":
        assert "LinearReLU" in kinds
    torch.testing.assert_close(fused(x), expected, rtol=1e-4, atol=1e-4)
    scripted = torch.jit.script(fused)
    torch.testing.assert_close(scripted(x), fused(x))


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
@pytest.mark.parametrize("name", ["tinycnn", "mobilenet_v2", "resnet18", "vit"])
def test_fx_quantize_and_script(name, engine):
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        model = _model(name)
        x = _calibrated_input()
        prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping(engine), (x,))
        prepared(x)
        quantized = convert_fx(prepared)
        n_float = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
        n_int8 = sum(isinstance(m, nnq.Conv2d) for m in quantized.modules())  # incl. ConvReLU2d
        assert n_int8 == n_float, "every conv must become an int8 conv"
        assert not any(isinstance(m, torch.nn.Conv2d) for m in quantized.modules())
        n_float = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
        n_int8 = sum(isinstance(m, nnq.Linear) for m in quantized.modules())  # incl. LinearReLU
        assert n_int8 == n_float, "every linear layer must become an int8 linear"
        out = quantized(x)
        assert out.shape == (2, 10) and torch.isfinite(out).all()
        scripted = torch.jit.script(quantized)
        torch.testing.assert_close(scripted(x), out)
    finally:
        torch.backends.quantized.engine = previous


@pytest.mark.parametrize("name", ["tinycnn", "mobilenet_v2", "resnet18", "vit"])
def test_torch_export(name):
    model = _model(name)
    x = _calibrated_input()
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x))
