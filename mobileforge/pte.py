"""ExecuTorch (``.pte``) export: capture, PT2E int8 (and pruning), lowering, serialisation.

The ``.pte`` path is ExecuTorch's successor to the lite-interpreter ``.ptl`` path: the fused fp32
model is captured with ``torch.export``, optionally quantized with PT2E (calibrated static int8,
optionally magnitude-pruned in the int8 domain), lowered to one delegate backend with
``to_edge_transform_and_lower`` and serialised with ``to_executorch``.

Combinations (executorch 1.5.1, torch 2.13.0, checked on Linux x86-64):

============  ======  ======  ===========  ===============================================
backend       fp32    int8    int8_pruned  runs on this host (``mobileforge.pte_runtime``)
============  ======  ======  ===========  ===============================================
xnnpack       yes     yes     yes          yes (``XnnpackBackend`` is in the pip wheel)
vulkan        yes     yes     yes          no  (no ``VulkanBackend`` in the pip wheel)
coreml        yes     yes     yes          no  (Core ML runs on Apple OSes only)
============  ======  ======  ===========  ===============================================

Exports are byte-for-byte reproducible (same model, inputs and versions -> same bytes, also
across processes and torch thread counts); Core ML needs the canonicalisation described in
``_canonicalize_coreml_dir`` for that. Vulkan int8 programs use ``q8ta`` shaders that may need
a GPU with integer dot product support.

Running, evaluating and timing a ``.pte`` is :mod:`mobileforge.pte_runtime`, which needs none of
the compiler imported here. Every function that needs executorch imports it inside the function:
this module is meant for job scripts only, and the Snakefile must never import it (importing
executorch's compiler costs about 2.5 s of CPU).
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mobileforge.versions import base_version, check_executorch

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

PTE_BACKENDS = ("xnnpack", "vulkan", "coreml")
PTE_VARIANTS = ("fp32", "int8", "int8_pruned")

# Core ML compiles int8 activations (quantize/dequantize on activations) only from iOS 17 /
# macOS 14 on; executorch's own PT2E Core ML recipe sets the same floor.
_COREML_INT8_DEPLOYMENT_TARGET = "iOS17"

# --------------------------------------------------------------------------- export helpers


def _partitioner(backend: str, variant: str) -> tuple[Any, dict[str, Any]]:
    """Return the backend's partitioner and the lowering settings worth recording."""
    if backend == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        return XnnpackPartitioner(), {}
    if backend == "vulkan":
        from executorch.backends.vulkan.partitioner.vulkan_partitioner import VulkanPartitioner

        # Default options: fp32 textures (no force_fp16), default texture limits.
        return VulkanPartitioner(), {"force_fp16": False}
    if backend == "coreml":
        import coremltools as ct
        from executorch.backends.apple.coreml.compiler import CoreMLBackend
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner

        # Core ML's default compute precision is fp16; "fp32" means fp32 here, for every
        # variant (int8 variants compute in fp32 between their quantized weights/activations).
        # Note fp32 Core ML models run on CPU/GPU only, never the Neural Engine.
        target = _COREML_INT8_DEPLOYMENT_TARGET if variant != "fp32" else None
        specs = CoreMLBackend.generate_compile_specs(
            compute_precision=ct.precision.FLOAT32,
            minimum_deployment_target=getattr(ct.target, target) if target else None,
        )
        settings = {"compute_precision": "fp32", "minimum_deployment_target": target}
        return CoreMLPartitioner(compile_specs=specs), settings
    raise ValueError(f"unknown .pte backend {backend!r}; expected one of {PTE_BACKENDS}")


def _quantizer(backend: str, per_channel: bool) -> tuple[Any, dict[str, Any]]:
    """Return the PT2E quantizer for a backend and its settings (JSON-serialisable).

    XNNPACK and Vulkan share the XNNPACK quantizer: executorch's ``VulkanQuantizer`` only does
    weight-only / dynamic quantization of linear layers, while the Vulkan partitioner lowers the
    XNNPACK quantizer's static int8 conv/linear patterns to its own ``q8ta`` kernels (that is what
    executorch's Vulkan tests do). Core ML has its own quantizer built on coremltools' config.
    """
    import torch

    if backend in ("xnnpack", "vulkan"):
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

        config = get_symmetric_quantization_config(is_per_channel=per_channel)
        settings = {
            "quantizer": "XNNPACKQuantizer",
            "config": "get_symmetric_quantization_config",
            "is_per_channel": per_channel,
            "weight": "int8 symmetric [-127, 127], "
            + ("per-channel (axis 0)" if per_channel else "per-tensor"),
            "activation": "int8 affine [-128, 127], per-tensor, HistogramObserver",
        }
        return XNNPACKQuantizer().set_global(config), settings
    if backend == "coreml":
        import coremltools as ct
        from executorch.backends.apple.coreml.quantizer import CoreMLQuantizer

        config = ct.optimize.torch.quantization.LinearQuantizerConfig(
            global_config=ct.optimize.torch.quantization.ModuleLinearQuantizerConfig(
                quantization_scheme="symmetric",
                activation_dtype=torch.quint8,
                weight_dtype=torch.qint8,
                weight_per_channel=per_channel,
            )
        )
        settings = {
            "quantizer": "CoreMLQuantizer",
            "config": "LinearQuantizerConfig(ModuleLinearQuantizerConfig)",
            "quantization_scheme": "symmetric",
            "activation_dtype": "quint8",
            "weight_dtype": "qint8",
            "is_per_channel": per_channel,
        }
        return CoreMLQuantizer(config), settings
    raise ValueError(f"unknown .pte backend {backend!r}; expected one of {PTE_BACKENDS}")


def _export_for_calibration(
    model: torch.nn.Module, example_input: torch.Tensor, calibration: torch.Tensor, batch: int
) -> tuple[torch.fx.GraphModule, int, bool]:
    """Capture the model for PT2E with a dynamic batch dimension when the model allows it.

    The lowered program keeps the example input's (fixed) batch size, but calibrating one
    sample at a time is slow; so the graph that is observed is exported with a dynamic batch
    (``Dim.AUTO``, hinted with a real calibration batch). If the model pins its batch size,
    export specialises it and calibration falls back to the example input's batch size.
    Returns the module to prepare, the calibration batch size and whether the batch is dynamic.
    """
    import torch

    chunk = min(batch, len(calibration))
    if chunk > 1:
        try:
            ep = torch.export.export(
                model, (calibration[:chunk],), dynamic_shapes=({0: torch.export.Dim.AUTO},)
            )
        except Exception:  # e.g. reshape(1, ...) in forward: the static export decides below
            ep = None
        if ep is not None:
            user_inputs = [
                n
                for n in ep.graph.nodes
                if n.op == "placeholder" and n.name in ep.graph_signature.user_inputs
            ]
            if user_inputs and isinstance(user_inputs[0].meta["val"].shape[0], torch.SymInt):
                return ep.module(), chunk, True
    ep = torch.export.export(model, (example_input,))
    return ep.module(), int(example_input.shape[0]), False


def _calibrate(
    module: torch.fx.GraphModule, calibration: torch.Tensor, chunk: int, dynamic: bool
) -> int:
    """Run calibration data through the observed module; return how many samples it saw.

    With a static batch, a trailing partial batch cannot be fed and is skipped.
    """
    seen = 0
    for start in range(0, len(calibration), chunk):
        part = calibration[start : start + chunk]
        if len(part) != chunk and not dynamic:
            break
        module(part)
        seen += len(part)
    return seen


def _prune_amount(prune: dict) -> float:
    """Validate pruning settings (the ``.ptl`` path's schema) and return the amount."""
    method = prune.get("method", "l1_unstructured")
    if method != "l1_unstructured":
        raise ValueError(f"int8_pruned supports method 'l1_unstructured' only, got {method!r}")
    amount = float(prune["amount"])
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"prune amount must be in [0, 1), got {amount}")
    return amount


def quantize_pt2e(
    model: torch.nn.Module,
    example_input: torch.Tensor,
    backend: str,
    calibration: torch.Tensor,
    prune: dict | None = None,
    *,
    per_channel: bool = True,
    calibration_batch_size: int = 32,
) -> tuple[torch.fx.GraphModule, dict[str, Any]]:
    """PT2E static int8 for ``backend``: capture, prepare, calibrate, convert (, prune).

    Returns the converted module (runnable in eager PyTorch: float in, float out, with explicit
    quantize/dequantize ops, i.e. the numerics the lowered program should reproduce) and its
    settings for the sidecar (``quantizer``, ``calibration_samples``, ``sparsity``, ``prune``).
    ``export_pte`` exports and lowers exactly this module.
    """
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    amount = _prune_amount(prune) if prune else None
    info: dict[str, Any] = {"sparsity": None, "prune": None}
    quantizer, info["quantizer"] = _quantizer(backend, per_channel)
    example_input = example_input.detach().to(torch.float32).contiguous()
    calibration = calibration.detach().to(torch.float32)
    with torch.no_grad():
        captured, chunk, dynamic = _export_for_calibration(
            model.eval(), example_input, calibration, calibration_batch_size
        )
        prepared = prepare_pt2e(captured, quantizer)
        info["calibration_samples"] = _calibrate(prepared, calibration, chunk, dynamic)
        converted = convert_pt2e(prepared)
        if amount is not None:
            stats = _prune_converted(converted, amount)
            info["sparsity"] = stats.pop("sparsity")
            info["prune"] = {"method": "l1_unstructured", "amount": amount, **stats}
    return converted, info


_PRUNABLE_OPS = {
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "convolution",
    "linear",
}
_DEQUANTIZE_OPS = {"dequantize_per_channel", "dequantize_per_tensor"}


def _op_base_name(target: Any) -> str | None:
    """``torch.ops.aten.conv2d.default`` -> ``conv2d``; None for non-operator targets."""
    name = getattr(target, "_opname", None)
    return name if isinstance(name, str) else None


def _get_attr(module: torch.nn.Module, dotted: str) -> torch.Tensor:
    obj: Any = module
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _constant_arg(module: torch.fx.GraphModule, arg: Any) -> Any:
    """Resolve a node argument that is a constant (get_attr) to its value, else return it."""
    import torch

    if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
        return _get_attr(module, arg.target)
    return arg


def _prune_converted(module: torch.fx.GraphModule, amount: float) -> dict[str, Any]:
    """L1-unstructured pruning of every conv/linear weight of a ``convert_pt2e`` graph.

    Same method as the ``.ptl`` path: per weight tensor, the ``amount`` fraction of entries with
    the smallest float magnitude is zeroed, chosen by the ``.ptl`` path's own
    :func:`mobileforge.prune.smallest_magnitude_mask` (L1Unstructured's count). For an
    int8 weight (a frozen int8 constant feeding a dequantize op) the magnitude is the dequantized
    value ``|(q - zero_point) * scale|``; zeroed entries are set to the zero point, so they
    dequantize to exactly 0, and scales are kept. A conv/linear the quantizer left in float is
    pruned in float. Mutates ``module`` in place and returns pruning statistics.
    """
    import torch

    from mobileforge.prune import smallest_magnitude_mask

    zeros = total = n_int8 = n_float = 0
    done: set[str] = set()  # a weight shared by several layers is pruned (and counted) once
    for node in module.graph.nodes:
        if node.op != "call_function" or _op_base_name(node.target) not in _PRUNABLE_OPS:
            continue
        weight_node = node.args[1]
        if not isinstance(weight_node, torch.fx.Node):
            raise ValueError(f"cannot prune {node.name}: its weight is not a graph value")
        constant = weight_node if weight_node.op == "get_attr" else weight_node.args[0]
        if isinstance(constant, torch.fx.Node) and constant.op == "get_attr":
            if constant.target in done:
                continue
            done.add(constant.target)
        if weight_node.op == "get_attr":  # float weight the quantizer did not annotate
            weight = _get_attr(module, weight_node.target)
            with torch.no_grad():
                weight.masked_fill_(smallest_magnitude_mask(weight.abs(), amount), 0.0)
            n_float += 1
            zeros += int((weight == 0).sum())
            total += weight.numel()
            continue
        if weight_node.op != "call_function" or _op_base_name(weight_node.target) not in (
            _DEQUANTIZE_OPS
        ):
            raise ValueError(
                f"cannot prune {node.name} faithfully: its weight comes from "
                f"{weight_node.format_node()}, not from a constant int8 tensor + dequantize"
            )
        q_node = weight_node.args[0]
        if not (isinstance(q_node, torch.fx.Node) and q_node.op == "get_attr"):
            raise ValueError(
                f"cannot prune {node.name} faithfully: its int8 weight is not a folded constant "
                "(convert_pt2e must run with fold_quantize=True)"
            )
        q = _get_attr(module, q_node.target)
        scale = _constant_arg(module, weight_node.args[1])
        zero_point = _constant_arg(module, weight_node.args[2])
        if _op_base_name(weight_node.target) == "dequantize_per_channel":
            axis = int(weight_node.args[3])
            shape = [1] * q.dim()
            shape[axis] = -1
            scale = torch.as_tensor(scale).reshape(shape)
            zero_point = torch.as_tensor(zero_point).reshape(shape)
        zero_point_t = torch.as_tensor(zero_point, dtype=torch.int64)
        dequantized = (q.to(torch.int64) - zero_point_t).to(torch.float32) * torch.as_tensor(
            scale, dtype=torch.float32
        )
        smallest = smallest_magnitude_mask(dequantized.abs(), amount)
        pruned = torch.where(smallest, zero_point_t.expand_as(q), q.to(torch.int64)).to(q.dtype)
        with torch.no_grad():
            q.copy_(pruned)
        n_int8 += 1
        zeros += int((pruned.to(torch.int64) == zero_point_t).sum())
        total += q.numel()
    if n_int8 + n_float == 0:
        raise ValueError("int8_pruned: the model has no conv/linear weights to prune")
    return {
        "pruned_int8_tensors": n_int8,
        "pruned_float_tensors": n_float,
        "pruned_elements_total": total,
        "sparsity": zeros / total,
    }


def _op_name(node: torch.fx.Node) -> str:
    """Stable, readable operator name (``aten.convolution.default``) for counting."""
    import torch

    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return str(target)  # "aten.conv2d.default"
    name = getattr(target, "__name__", None)  # EdgeOpOverload: "aten.convolution.default"
    return name if isinstance(name, str) else str(target)


def _delegation_counts(graph_module: torch.fx.GraphModule) -> dict[str, Any]:
    """Count operators inside delegates vs left on portable (non-delegated) kernels.

    Uses executorch's own helpers (``executorch.exir.backend.utils``): ``get_delegates`` for the
    lowered submodules (their ``original_module`` holds the ops each delegate swallowed) and
    ``get_non_lowered_nodes`` for what stays outside, which already excludes the ``getitem``
    nodes that only unpack delegate outputs. ``devtools.get_delegation_info`` counts those
    ``getitem`` as non-delegated, so its non-delegated number is higher by that many.
    """
    from executorch.exir.backend.utils import get_delegates, get_non_lowered_nodes

    delegated: Counter[str] = Counter()
    backend_ids: list[str] = []
    delegates = get_delegates(graph_module.graph)
    for node in delegates:
        lowered = getattr(graph_module, node.target)
        backend_ids.append(lowered.backend_id)
        for inner in lowered.original_module.graph.nodes:
            if inner.op == "call_function":
                delegated[_op_name(inner)] += 1
    portable = Counter(_op_name(n) for n in get_non_lowered_nodes(graph_module.graph))
    return {
        "delegated_subgraphs": len(delegates),
        "delegate_backend_ids": sorted(set(backend_ids)),
        "delegated_nodes": sum(delegated.values()),
        "portable_nodes": sum(portable.values()),
        "delegated_ops": dict(sorted(delegated.items())),
        "portable_ops": dict(sorted(portable.items())),
    }


# coremltools stamps the conversion day into the model's user metadata: bytes would change daily.
_COREML_VOLATILE_METADATA = ("com.github.apple.coremltools.conversion_date",)


def _content_uuid(seed: bytes) -> str:
    """A UUID-formatted id derived from ``seed`` (stands in for uuid4 where bytes must repeat)."""
    return str(uuid.UUID(bytes=hashlib.sha256(seed).digest()[:16], version=4))


def _canonicalize_coreml_dir(root: Path) -> None:
    """Make a Core ML delegate payload directory a function of the model alone.

    Left alone, three things make Core ML ``.pte`` bytes differ between two exports of the same
    model (everything else is identical): (1) executorch names each payload
    ``executorch_<uuid4>`` in ``metadata.json``, the Core ML runtime's cache key for the model it
    compiles on device; (2) the ``.mlpackage`` ``Manifest.json`` keys its items by uuid4 (and
    orders them by those random keys); (3) ``model.mlmodel`` is a protobuf with map fields
    (op attributes, op inputs, user metadata) serialised in an order that changes from process
    to process, plus coremltools' ``conversion_date`` metadata. Here (3) is re-serialised with
    protobuf's deterministic mode and the date dropped, (2) gets ids derived from each item's
    path, sorted, and (1) an id derived from the SHA-256 of every other file of the payload, so
    the runtime's cache key still changes whenever the model does.
    """
    import json

    from coremltools.proto import Model_pb2

    for spec_path in sorted(root.rglob("*.mlmodel")):
        spec = Model_pb2.Model()
        spec.ParseFromString(spec_path.read_bytes())
        user_metadata = spec.description.metadata.userDefined
        for key in _COREML_VOLATILE_METADATA:
            if key in user_metadata:
                del user_metadata[key]
        spec_path.write_bytes(spec.SerializeToString(deterministic=True))
    for manifest_path in sorted(root.rglob("Manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        new_ids = {
            old: _content_uuid(b"mlpackage item " + item["path"].encode())
            for old, item in manifest["itemInfoEntries"].items()
        }
        manifest["itemInfoEntries"] = {
            new_ids[old]: item for old, item in manifest["itemInfoEntries"].items()
        }
        manifest["rootModelIdentifier"] = new_ids[manifest["rootModelIdentifier"]]
        manifest_path.write_text(json.dumps(manifest, indent=4, sort_keys=True) + "\n")
    metadata_path = root / "metadata.json"
    if metadata_path.exists():
        digest = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p != metadata_path):
            relative = path.relative_to(root).as_posix().encode()
            digest.update(len(relative).to_bytes(8, "little") + relative)
            data = path.read_bytes()
            digest.update(len(data).to_bytes(8, "little") + data)
        text = metadata_path.read_text()
        old_id = json.loads(text)["identifier"]
        new_id = "executorch_" + _content_uuid(digest.digest())
        metadata_path.write_text(text.replace(json.dumps(old_id), json.dumps(new_id)))


@contextlib.contextmanager
def _deterministic_coreml_payloads() -> Iterator[list[str]]:
    """While active, Core ML lowering canonicalises each payload before it is packed.

    executorch packs the payload directory with ``executorchcoreml.flatten_directory_contents``
    at the end of ``CoreMLBackend.preprocess``; this wraps that one call with
    ``_canonicalize_coreml_dir``. Yields the list of payload directories handled (for checks).
    """
    from executorch.backends.apple.coreml.compiler import coreml_preprocess

    native = coreml_preprocess.executorchcoreml
    original = native.flatten_directory_contents
    handled: list[str] = []

    def flatten(path: str) -> bytes | None:
        _canonicalize_coreml_dir(Path(path))
        handled.append(path)
        return original(path)

    native.flatten_directory_contents = flatten
    try:
        yield handled
    finally:
        native.flatten_directory_contents = original


# --------------------------------------------------------------------------- export


def export_pte(
    model: torch.nn.Module,
    example_input: torch.Tensor,
    backend: str,
    variant: str,
    calibration: torch.Tensor | None = None,
    prune: dict | None = None,
    *,
    per_channel: bool = True,
    calibration_batch_size: int = 32,
) -> tuple[bytes, dict[str, Any]]:
    """Export a fused fp32 model to an ExecuTorch program lowered to one delegate backend.

    Args:
        model: the fused fp32 model in eval mode (e.g. a ``fuse_fx`` GraphModule).
        example_input: one input; its shape, batch included, is baked into the program.
        backend: one of ``PTE_BACKENDS``.
        variant: ``fp32``; ``int8`` (PT2E static int8, calibrated on ``calibration``);
            ``int8_pruned`` (``int8`` then L1-unstructured pruning of the int8 conv/linear
            weights, ``prune={"amount": 0.3, "method": "l1_unstructured"}``).
        calibration: ``[N, C, H, W]`` calibration samples; required for int8 variants.
        prune: pruning settings; required for ``int8_pruned`` and refused otherwise, so a
            config mistake cannot silently produce an unpruned "pruned" artifact.
        per_channel: per-channel (vs per-tensor) symmetric int8 weights.
        calibration_batch_size: samples per calibration forward pass.

    Returns:
        ``(program bytes, info)``; ``info`` is JSON-serialisable and deterministic. Two exports
        of the same model and inputs give identical bytes (Core ML: see
        ``_canonicalize_coreml_dir``).
        Node counts are taken from the lowered edge program, before each backend's own fusion:
        ``delegated_nodes`` counts the operator nodes inside the delegates (int8 programs count
        their quantize/dequantize nodes too, as ExecuTorch's ``get_delegation_info`` does);
        ``portable_nodes`` counts the operator nodes left for ExecuTorch's portable kernels.
        Other keys: ``delegated_subgraphs``, ``delegate_backend_ids``, ``delegated_ops`` /
        ``portable_ops`` (by operator name), ``quantizer``, ``calibration_samples``,
        ``sparsity`` and ``prune`` (int8_pruned), ``lowering``, ``input_shape``,
        ``size_bytes``, ``executorch_version``, ``torch_version``.
    """
    import torch
    from executorch.exir import to_edge_transform_and_lower

    et_version = check_executorch()
    if backend not in PTE_BACKENDS:
        raise ValueError(f"unknown .pte backend {backend!r}; expected one of {PTE_BACKENDS}")
    if variant not in PTE_VARIANTS:
        raise ValueError(f"unknown .pte variant {variant!r}; expected one of {PTE_VARIANTS}")
    if variant == "int8_pruned":
        if not prune:
            raise ValueError("variant int8_pruned needs prune={'amount': ..., 'method': ...}")
        _prune_amount(prune)
    elif prune:
        raise ValueError(f"prune settings given for variant {variant!r}; only int8_pruned prunes")
    if variant != "fp32" and (calibration is None or len(calibration) == 0):
        raise ValueError(f"variant {variant!r} needs calibration data (a [N, C, H, W] tensor)")

    model = model.eval()
    example_input = example_input.detach().to(torch.float32).contiguous()
    info: dict[str, Any] = {
        "backend": backend,
        "variant": variant,
        "input_shape": list(example_input.shape),
        "quantizer": None,
        "calibration_samples": None,
        "sparsity": None,
        "prune": None,
    }
    with torch.no_grad():
        if variant == "fp32":
            exported = torch.export.export(model, (example_input,))
        else:
            assert calibration is not None
            converted, qinfo = quantize_pt2e(
                model,
                example_input,
                backend,
                calibration,
                prune if variant == "int8_pruned" else None,
                per_channel=per_channel,
                calibration_batch_size=calibration_batch_size,
            )
            info.update(qinfo)
            exported = torch.export.export(converted, (example_input,))

        partitioner, info["lowering"] = _partitioner(backend, variant)
        payloads: list[str] = []
        with contextlib.ExitStack() as stack:
            if backend == "coreml":
                payloads = stack.enter_context(_deterministic_coreml_payloads())
            edge = to_edge_transform_and_lower(exported, partitioner=[partitioner])
        if backend == "coreml":
            info["lowering"]["canonicalized_payloads"] = len(payloads)
            info["lowering"]["dropped_metadata"] = list(_COREML_VOLATILE_METADATA)
        info.update(_delegation_counts(edge.exported_program().graph_module))
        buffer = edge.to_executorch().buffer

    info["size_bytes"] = len(buffer)
    info["executorch_version"] = et_version
    info["torch_version"] = base_version(torch.__version__)
    return buffer, info
