"""ExecuTorch export/runtime tests on a tiny fused conv-bn-relu-linear model (XNNPACK, host).

The .pte files are really run by the ExecuTorch runtime (``mobileforge.runtime.pte``). Vulkan and
Core ML programs cannot run on this host and their lowering is slow (Core ML int8: ~40 s of
quantizer pattern tracing), so only the Core ML payload canonicalisation is tested here, on a
synthetic payload.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("executorch")

from torch import nn  # noqa: E402
from torch.ao.quantization.quantize_fx import fuse_fx  # noqa: E402

from mobileforge.export import coreml, pte  # noqa: E402
from mobileforge.prune.pt2e import prune_converted  # noqa: E402
from mobileforge.quantize.pt2e import load_converted, quantize_pt2e, save_converted  # noqa: E402
from mobileforge.quantize.recipe import Recipe  # noqa: E402
from mobileforge.runtime import pte as pte_runtime  # noqa: E402
from mobileforge.versions import executorch_mismatch, installed_executorch_mismatch  # noqa: E402

PRUNE = {"amount": 0.3, "method": "l1_unstructured"}


class TinyNet(nn.Module):
    """conv-bn-relu, conv-relu, pool, linear: the patterns our fused models are made of."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.conv2(x))
        return self.fc(torch.flatten(self.pool(x), 1))


@pytest.fixture(scope="module")
def setup() -> dict:
    torch.manual_seed(0)
    model = TinyNet()
    model.train()
    with torch.no_grad():  # non-trivial BN statistics, so fusion actually changes weights
        for _ in range(3):
            model(torch.randn(16, 3, 16, 16))
    fused = fuse_fx(model.eval())
    return {
        "model": fused,
        "x": torch.randn(1, 3, 16, 16),
        "calib": torch.randn(48, 3, 16, 16),
        "eval_x": torch.randn(10, 3, 16, 16),
    }


@pytest.fixture(scope="module")
def built(setup: dict) -> dict:
    out = {}
    for variant in ("fp32", "int8"):
        out[variant] = pte.export_pte(
            setup["model"],
            setup["x"],
            "xnnpack",
            variant,
            calibration=None if variant == "fp32" else setup["calib"],
        )
    # int8_pruned as the export stage builds it: the converted int8 program, pruned in place,
    # lowered as it is (pte.lower).
    converted, info = quantize_pt2e(setup["model"], setup["x"], "xnnpack", setup["calib"])
    info["sparsity"], info["prune"] = prune_converted(converted, PRUNE)
    buffer, lowering = pte.lower(converted, setup["x"], "xnnpack", "int8_pruned")
    out["int8_pruned"] = buffer, {**info, **lowering}
    return out


@pytest.fixture(scope="module")
def converted_int8(setup: dict) -> torch.fx.GraphModule:
    """The PT2E-converted (unpruned) module export_pte lowers for int8: the numerics to match."""
    module, _ = quantize_pt2e(setup["model"], setup["x"], "xnnpack", setup["calib"])
    return module


def _run(buffer: bytes, x: torch.Tensor, tmp_path) -> torch.Tensor:
    path = tmp_path / "m.pte"
    path.write_bytes(buffer)
    method = pte_runtime.load_pte(path)
    return pte_runtime.run_pte(method, x).clone()


def test_fp32_matches_eager_and_is_delegated(setup, built, tmp_path) -> None:
    from executorch.devtools.backend_debug import get_delegation_info

    buffer, info = built["fp32"]
    out = _run(buffer, setup["x"], tmp_path)
    with torch.no_grad():
        ref = setup["model"](setup["x"])
    assert torch.allclose(out, ref, atol=1e-4, rtol=0)
    assert info["delegated_nodes"] > 0 and info["portable_nodes"] == 0
    assert info["delegate_backend_ids"] == ["XnnpackBackend"]
    assert info["delegated_ops"]["aten.convolution.default"] == 2
    assert info["size_bytes"] == len(buffer)
    assert pte_runtime.pte_delegate_ids(tmp_path / "m.pte") == ["XnnpackBackend"]
    # Cross-check the counts with executorch's own devtools utility, which also counts the
    # getitem nodes unpacking delegate outputs as non-delegated.
    import executorch.exir as exir

    ep = torch.export.export(setup["model"], (setup["x"],))
    partitioner, _ = pte._partitioner("xnnpack", "fp32")
    edge = exir.to_edge_transform_and_lower(ep, partitioner=[partitioner])
    ref_info = get_delegation_info(edge.exported_program().graph_module)
    assert ref_info.num_delegated_nodes == info["delegated_nodes"]
    assert ref_info.num_non_delegated_nodes == info["portable_nodes"] + 1  # one getitem


def test_int8_matches_converted_graph_and_eager(setup, built, converted_int8, tmp_path) -> None:
    buffer, info = built["int8"]
    assert info["quantizer"]["quantizer"] == "XNNPACKQuantizer"
    assert info["quantizer"]["is_per_channel"] is True
    assert info["calibration_samples"] == 48
    assert info["delegated_nodes"] > 0 and info["portable_nodes"] == 0
    assert info["delegated_ops"]["quantized_decomposed.dequantize_per_channel.default"] == 3
    out = _run(buffer, setup["x"], tmp_path)
    with torch.no_grad():
        simulated = converted_int8(setup["x"])
        ref = setup["model"](setup["x"])
    scale = ref.abs().max()
    # XNNPACK's int8 kernels vs PyTorch's q/dq simulation: a few output quantization steps.
    assert (out - simulated).abs().max() <= 0.02 * scale
    # vs fp32: int8 error, but the same prediction-level behaviour.
    assert (out - ref).abs().max() <= 0.1 * scale
    assert not torch.equal(out, ref)


def test_int8_pruned_sparsity_and_numerics(setup, built, converted_int8, tmp_path) -> None:
    buffer, info = built["int8_pruned"]
    assert info["prune"]["method"] == "l1_unstructured"
    assert info["prune"]["pruned_int8_tensors"] == 3  # 2 convs + 1 linear, all int8
    assert info["prune"]["pruned_float_tensors"] == 0
    assert PRUNE["amount"] - 0.01 <= info["sparsity"] <= PRUNE["amount"] + 0.05
    converted, _ = quantize_pt2e(setup["model"], setup["x"], "xnnpack", setup["calib"])
    sparsity, _ = prune_converted(converted, PRUNE)
    assert sparsity == info["sparsity"]
    # Per int8 weight: exactly the round(amount * numel) entries of smallest dequantized
    # magnitude are zeroed (torch.nn.utils.prune.L1Unstructured's rule), the rest and every
    # scale are untouched.
    before = dict(converted_int8.named_buffers())
    after = dict(converted.named_buffers())
    checked = 0
    for node in converted.graph.nodes:
        if getattr(node.target, "_opname", None) != "dequantize_per_channel":
            continue
        q_name, scale_name = node.args[0].target, node.args[1].target
        q0, q1 = before[q_name], after[q_name]
        assert torch.equal(before[scale_name], after[scale_name])
        k = round(PRUNE["amount"] * q0.numel())
        assert int((q1 == 0).sum()) == max(k, int((q0 == 0).sum()))
        kept = q1 != 0
        assert torch.equal(q1[kept], q0[kept])
        shape = [-1] + [1] * (q0.dim() - 1)
        mag = (q0.float() * after[scale_name].reshape(shape)).abs()
        assert mag[~kept].max() <= mag[kept].min()
        checked += 1
    assert checked == 3
    out = _run(buffer, setup["x"], tmp_path)
    with torch.no_grad():
        simulated = converted(setup["x"])
    assert (out - simulated).abs().max() <= 0.02 * simulated.abs().max()
    assert built["int8_pruned"][0] != built["int8"][0]


def test_export_is_deterministic(setup, built) -> None:
    for variant in ("fp32", "int8"):
        again = pte.export_pte(
            setup["model"],
            setup["x"],
            "xnnpack",
            variant,
            calibration=None if variant == "fp32" else setup["calib"],
        )
        assert again[0] == built[variant][0], f"{variant}: bytes differ between two exports"
        assert again[1] == built[variant][1]


@pytest.mark.slow
def test_a_saved_converted_program_lowers_to_the_bytes_of_calibrating_again(
    setup, built, tmp_path
) -> None:
    """What quantize_pte saves and export_pte lowers, instead of calibrating again."""
    recipe = Recipe()  # export_pte's default, as in ``built``
    paths = [tmp_path / "a.pt2", tmp_path / "b.pt2"]
    for path in paths:  # two calibrations: the same module, its graphs at other addresses
        converted, _ = quantize_pt2e(setup["model"], setup["x"], "xnnpack", setup["calib"], recipe)
        saved = save_converted(converted, setup["x"], setup["calib"], recipe, path)
        assert saved == {"dynamic_batch": True}
    assert paths[0].read_bytes() == paths[1].read_bytes()  # no memory address in the file
    loaded = load_converted(paths[0])
    with torch.no_grad():  # the batch stays dynamic: the budget runs the calibration split
        assert torch.equal(loaded(setup["calib"]), converted(setup["calib"]))
    assert pte.lower(loaded, setup["x"], "xnnpack", "int8")[0] == built["int8"][0]
    pruned = load_converted(paths[1])
    prune_converted(pruned, PRUNE)
    assert pte.lower(pruned, setup["x"], "xnnpack", "int8_pruned")[0] == built["int8_pruned"][0]


def _fake_coreml_payload(root, order: int, weights: bytes) -> None:
    """A payload directory as executorch's Core ML preprocess writes it, with its randomness:
    uuid4 ids, manifest order following them, protobuf map entries in varying order."""
    import json
    import uuid

    from coremltools.proto import Model_pb2

    package = root / "model.mlpackage"
    (package / "Data/com.apple.CoreML/weights").mkdir(parents=True)
    (package / "Data/com.apple.CoreML/weights/weight.bin").write_bytes(weights)
    entries = {"source": "torch", "version": "9.0", coreml.VOLATILE_METADATA[0]: "2026-01-01"}
    parts = []
    for key, value in sorted(entries.items(), reverse=bool(order)):
        part = Model_pb2.Model()
        part.description.metadata.userDefined[key] = value
        parts.append(part.SerializeToString())
    (package / "Data/com.apple.CoreML/model.mlmodel").write_bytes(b"".join(parts))
    items = {
        str(uuid.uuid4()): {"name": "model.mlmodel", "path": "com.apple.CoreML/model.mlmodel"},
        str(uuid.uuid4()): {"name": "weights", "path": "com.apple.CoreML/weights"},
    }
    root_id = next(iter(items))
    ordered = dict(sorted(items.items(), reverse=bool(order)))
    manifest = {"fileFormatVersion": "1.0.0", "itemInfoEntries": ordered}
    manifest["rootModelIdentifier"] = root_id
    (package / "Manifest.json").write_text(json.dumps(manifest, indent=4))
    metadata = {
        "inputNames": ["x"],
        "outputNames": ["y"],
        "identifier": f"executorch_{uuid.uuid4()}",
    }
    (root / "metadata.json").write_text(json.dumps(metadata))


def test_coreml_payload_is_canonicalized(tmp_path) -> None:
    import json

    from coremltools.proto import Model_pb2

    spec_file = Path("model.mlpackage/Data/com.apple.CoreML/model.mlmodel")
    manifest_file, metadata_file = Path("model.mlpackage/Manifest.json"), Path("metadata.json")

    def canonical(name: str, order: int, weights: bytes) -> dict[Path, bytes]:
        root = tmp_path / name
        _fake_coreml_payload(root, order, weights)
        coreml.canonicalize_payload_dir(root)
        return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    a, b = canonical("a", 0, b"\x01\x02"), canonical("b", 1, b"\x01\x02")
    assert a == b  # random ids, orders and the date are gone
    other = canonical("c", 0, b"\x01\x03")
    assert json.loads(a[metadata_file])["identifier"].startswith("executorch_")
    assert other[metadata_file] != a[metadata_file]  # other weights, other runtime cache key
    manifest = json.loads(a[manifest_file])
    assert manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]["name"] == "model.mlmodel"
    spec = Model_pb2.Model()
    spec.ParseFromString(a[spec_file])
    assert dict(spec.description.metadata.userDefined) == {"source": "torch", "version": "9.0"}


def test_evaluate_pte_pads_last_batch(setup, tmp_path) -> None:
    x4 = torch.randn(4, 3, 16, 16)
    buffer, info = pte.export_pte(setup["model"], x4, "xnnpack", "fp32")
    assert info["input_shape"] == [4, 3, 16, 16]
    path = tmp_path / "b4.pte"
    path.write_bytes(buffer)
    eval_x = setup["eval_x"]  # 10 samples: batches of 4, 4, 2 (+2 padding)
    with torch.no_grad():
        ref = setup["model"](eval_x)
    y = ref.argmax(dim=1)
    y[:3] = (y[:3] + 1) % 10  # 3 of 10 wrong on purpose
    res = pte_runtime.evaluate_pte(path, eval_x, y, ref)
    assert res["n"] == 10
    assert res["accuracy"] == pytest.approx(70.0)
    assert res["max_abs_diff"] < 1e-4
    assert pte_runtime.evaluate_pte(path, eval_x, y, None)["max_abs_diff"] is None
    with pytest.raises(ValueError, match="fixed input shape"):
        pte_runtime.run_pte(pte_runtime.load_pte(path), eval_x[:1])


def test_static_batch_model_calibrates_per_sample() -> None:
    class Pinned(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(12, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.reshape(1, 12))  # batch size 1 baked in

    _, info = quantize_pt2e(Pinned().eval(), torch.randn(1, 12), "xnnpack", torch.randn(5, 12))
    assert info["calibration_samples"] == 5


def test_runnable_on_host() -> None:
    assert pte_runtime.pte_runnable_on_host("xnnpack") is True
    assert pte_runtime.pte_runnable_on_host("coreml") is False
    from executorch.runtime import Runtime

    names = Runtime.get().backend_registry.registered_backend_names
    assert pte_runtime.pte_runnable_on_host("vulkan") is ("VulkanBackend" in names)
    with pytest.raises(ValueError):
        pte_runtime.pte_runnable_on_host("metal")


def test_load_names_the_missing_backend(built, tmp_path) -> None:
    # The XNNPACK program with its delegate id renamed (same length, so the flatbuffer stays
    # valid): what loading a Vulkan or Core ML .pte on this host looks like.
    buffer = built["fp32"][0]
    assert buffer.count(b"XnnpackBackend") == 1
    path = _write(tmp_path, buffer.replace(b"XnnpackBackend", b"MissingBackend"))
    with pytest.raises(RuntimeError, match="needs delegate backend.s. MissingBackend"):
        pte_runtime.load_pte(path)


def test_bad_arguments_are_refused(setup) -> None:
    m, x, calib = setup["model"], setup["x"], setup["calib"]
    with pytest.raises(ValueError, match="backend"):
        pte.export_pte(m, x, "cpu", "fp32")
    with pytest.raises(ValueError, match="variant"):
        pte.export_pte(m, x, "xnnpack", "fp16")
    with pytest.raises(ValueError, match="calibration"):
        pte.export_pte(m, x, "xnnpack", "int8")
    with pytest.raises(ValueError, match="variant"):  # pruned programs go through pte.lower
        pte.export_pte(m, x, "xnnpack", "int8_pruned", calib)
    converted, _ = quantize_pt2e(m, x, "xnnpack", calib)
    with pytest.raises(ValueError, match="l1_unstructured"):
        prune_converted(converted, {"amount": 0.3, "method": "ln"})


def test_check_executorch(monkeypatch) -> None:
    assert pte.check_executorch() == "1.5.1"
    import executorch.version

    monkeypatch.setattr(executorch.version, "__version__", "1.4.1+cpu")
    with pytest.raises(RuntimeError) as err:
        pte.check_executorch()
    msg = str(err.value)
    assert "\n" not in msg
    assert "executorch 1.4.1" in msg and "torch 2.13.0" in msg and "executorch 1.5.1" in msg
    assert "pip install executorch==1.5.1" in msg

    monkeypatch.setattr(torch, "__version__", "2.99.0")
    with pytest.raises(RuntimeError, match="no executorch release is pinned for torch 2.99.0"):
        pte.check_executorch()
    monkeypatch.setattr(torch, "__version__", "2.13.0+cpu")

    monkeypatch.setitem(sys.modules, "executorch.version", None)  # import now fails
    with pytest.raises(RuntimeError, match="and no executorch, .*pip install executorch=="):
        pte.check_executorch()


def test_installed_pair_is_checked_from_metadata_without_import() -> None:
    assert installed_executorch_mismatch() is None
    problem = executorch_mismatch("2.13.0+cpu", "1.4.0")
    assert problem == (
        "found torch 2.13.0 and executorch 1.4.0, but torch 2.13.0 requires executorch 1.5.1; "
        "fix: pip install executorch==1.5.1"
    )


def test_set_pte_threads(setup, built, tmp_path) -> None:
    gc.collect()
    original = pte_runtime.get_pte_threads()
    try:
        assert pte_runtime.set_pte_threads(1) == 1
        assert pte_runtime.get_pte_threads() == 1
        method = pte_runtime.load_pte(_write(tmp_path, built["fp32"][0]))
        with pytest.raises(RuntimeError, match="before load_pte"):
            pte_runtime.set_pte_threads(2)
        assert pte_runtime.set_pte_threads(1) == 1  # no change: allowed
        del method
        gc.collect()
        assert pte_runtime.set_pte_threads(2) == 2
        with pytest.raises(ValueError):
            pte_runtime.set_pte_threads(0)
    finally:
        gc.collect()
        pte_runtime.set_pte_threads(original)


def _write(tmp_path, buffer: bytes):
    path = tmp_path / "t.pte"
    path.write_bytes(buffer)
    return path


def test_runtime_runs_a_pte_without_importing_the_compiler(built, tmp_path) -> None:
    # executorch.runtime would import executorch.exir (seconds per evaluation and benchmark
    # process); pte_runtime must load, run and resize threads with the bindings alone.
    import subprocess

    path = _write(tmp_path, built["fp32"][0])
    code = (
        "import sys, torch\n"
        "from mobileforge.runtime import pte as pte_runtime\n"
        "pte_runtime.set_pte_threads(1)\n"
        f"loaded = pte_runtime.load_pte({str(path)!r})\n"
        "out = pte_runtime.run_pte(loaded, torch.zeros(loaded.input_shape))\n"
        "assert out.shape == (1, 10), out.shape\n"
        "compiler = ('executorch.exir', 'torch._dynamo')\n"
        "print(sorted(m for m in sys.modules if m.startswith(compiler)))\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_xnnpack_pattern_guard_matches_the_installed_patterns() -> None:
    """Every bilinear/SDPA pattern of this executorch holds the operators the guard requires."""
    from executorch.backends.xnnpack.partition.graphs import bilinear_2d, sdpa

    from mobileforge.export.xnnpack_patterns import REQUIRED_OPS, graph_ops

    getters = {"bilinear_2d": bilinear_2d.get_graphs, "sdpa": sdpa.get_graphs}
    for module, _, required in REQUIRED_OPS.values():
        patterns = getters[module]()
        assert patterns
        for pattern in patterns:
            assert required <= graph_ops(pattern), (module, graph_ops(pattern))


class Upsampler(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(self.conv(x), scale_factor=2, mode="bilinear")


@pytest.mark.slow
def test_skipping_unmatchable_patterns_changes_no_byte(setup, monkeypatch) -> None:
    from executorch.backends.xnnpack.partition.graphs import bilinear_2d

    built_patterns = []
    original = bilinear_2d.get_graphs_dict

    def counting() -> dict:
        built_patterns.append(1)
        return original()

    monkeypatch.setattr(bilinear_2d, "get_graphs_dict", counting)
    for model, x, matchable in [
        (setup["model"], setup["x"], False),
        (Upsampler().eval(), torch.randn(1, 3, 8, 8), True),
    ]:
        for variant in ("fp32", "int8"):
            calibration = None if variant == "fp32" else torch.randn(8, *x.shape[1:])
            args = (model, x, "xnnpack", variant, calibration)
            built_patterns.clear()
            fast, _ = pte.export_pte(*args)
            assert bool(built_patterns) == matchable  # patterns built only where they can match
            slow, _ = pte.export_pte(*args, skip_patterns=False)
            assert built_patterns  # the unguarded lowering always builds them
            assert fast == slow, (type(model).__name__, variant)


@pytest.mark.slow
def test_shared_node_provenance_changes_no_byte(setup, monkeypatch) -> None:
    """The provenance lists are shared instead of deep-copied, on this torch, for the same bytes."""
    import copy

    import torch.fx.traceback as fx_traceback

    from mobileforge import provenance

    assert provenance._applicable(fx_traceback)  # a torch that reads otherwise would skip it
    shared = []
    original = provenance._copy_history

    def counting(value, memo=None):
        shared.append(1)
        return original(value, memo)

    monkeypatch.setattr(provenance, "_copy_history", counting)
    args = (setup["model"], setup["x"], "xnnpack", "int8", torch.randn(8, *setup["x"].shape[1:]))
    fast, _ = pte.export_pte(*args)
    assert shared  # the swap was in effect while exporting
    assert fx_traceback.copy is copy  # and is undone afterwards
    monkeypatch.setattr(provenance, "_applicable", lambda _: False)
    shared.clear()
    slow, _ = pte.export_pte(*args)
    assert not shared
    assert fast == slow
