"""ExecuTorch (``.pte``) export: capture, PT2E int8, lowering, serialisation.

The ``.pte`` path is ExecuTorch's successor to the lite-interpreter ``.ptl`` path: the fused fp32
model is captured with ``torch.export``, optionally quantized with PT2E (calibrated static int8,
which the export stage may magnitude-prune in the int8 domain), lowered to one delegate backend with
``to_edge_transform_and_lower`` and serialised with ``to_executorch``.

Combinations (executorch 1.5.1, torch 2.13.0, checked on Linux x86-64):

============  ======  ======  ===========  ===============================================
backend       fp32    int8    int8_pruned  runs on this host (``mobileforge.runtime.pte``)
============  ======  ======  ===========  ===============================================
xnnpack       yes     yes     yes          yes (``XnnpackBackend`` is in the pip wheel)
vulkan        yes     yes     yes          no  (no ``VulkanBackend`` in the pip wheel)
coreml        yes     yes     yes          no  (Core ML runs on Apple OSes only)
============  ======  ======  ===========  ===============================================

Exports are byte-for-byte reproducible (same model, inputs and versions -> same bytes, also
across processes and torch thread counts); Core ML needs the canonicalisation of
:mod:`mobileforge.export.coreml` for that. Vulkan int8 programs use ``q8ta`` shaders that may need
a GPU with integer dot product support.

Running, evaluating and timing a ``.pte`` is :mod:`mobileforge.runtime.pte`, which needs none of
the compiler imported here. Every function that needs executorch imports it inside the function:
this module is meant for job scripts only, and the Snakefile must never import it (importing
executorch's compiler costs about 2.5 s of CPU).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import TYPE_CHECKING, Any

from mobileforge import layout
from mobileforge.export import coreml
from mobileforge.export.xnnpack_patterns import skip_unmatchable_patterns
from mobileforge.provenance import shallow_node_provenance
from mobileforge.quantize.pt2e import quantize_pt2e
from mobileforge.quantize.recipe import Recipe
from mobileforge.versions import base_version, check_executorch

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

PTE_BACKENDS = layout.BACKENDS["pte"]
#: Variants :func:`export_pte` builds from a fused model. ``int8_pruned`` programs are the int8
#: program pruned within the accuracy budget (``stages.export``), lowered by :func:`lower`.
PTE_VARIANTS = ("fp32", "int8")

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


# --------------------------------------------------------------------------- export


def export_pte(
    model: torch.nn.Module,
    example_input: torch.Tensor,
    backend: str,
    variant: str,
    calibration: torch.Tensor | None = None,
    recipe: Recipe | None = None,
    *,
    skip_patterns: bool = True,
) -> tuple[bytes, dict[str, Any]]:
    """Export a fused fp32 model to an ExecuTorch program lowered to one delegate backend.

    Args:
        model: the fused fp32 model in eval mode (e.g. a ``fuse_fx`` GraphModule).
        example_input: one input; its shape, batch included, is baked into the program.
        backend: one of ``PTE_BACKENDS``.
        variant: ``fp32`` or ``int8`` (PT2E static int8, calibrated on ``calibration``). An
            ``int8_pruned`` program is a converted int8 program pruned in place and lowered with
            :func:`lower`, as the workflow's export stage does.
        calibration: ``[N, C, H, W]`` calibration samples; required for ``int8``.
        recipe: calibration choices and fp32 layers of ``int8`` (default: ``Recipe()``).
        skip_patterns: skip XNNPACK pattern graphs that cannot match (same bytes, seconds
            faster: :mod:`mobileforge.export.xnnpack_patterns`); False only to check that.

    Returns:
        ``(program bytes, info)``; ``info`` is JSON-serialisable and deterministic. Two exports
        of the same model and inputs give identical bytes (Core ML: see
        ``mobileforge.export.coreml``).
        Node counts are taken from the lowered edge program, before each backend's own fusion:
        ``delegated_nodes`` counts the operator nodes inside the delegates (int8 programs count
        their quantize/dequantize nodes too, as ExecuTorch's ``get_delegation_info`` does);
        ``portable_nodes`` counts the operator nodes left for ExecuTorch's portable kernels.
        Other keys: ``delegated_subgraphs``, ``delegate_backend_ids``, ``delegated_ops`` /
        ``portable_ops`` (by operator name), ``quantizer``, ``calibration_samples``,
        ``sparsity`` and ``prune`` (None: nothing is pruned here), ``lowering``,
        ``input_shape``, ``size_bytes``, ``executorch_version``, ``torch_version``.
    """
    import torch

    check_executorch()
    if backend not in PTE_BACKENDS:
        raise ValueError(f"unknown .pte backend {backend!r}; expected one of {PTE_BACKENDS}")
    if variant not in PTE_VARIANTS:
        raise ValueError(f"unknown .pte variant {variant!r}; expected one of {PTE_VARIANTS}")
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
            program = model
        else:
            assert calibration is not None
            program, qinfo = quantize_pt2e(model, example_input, backend, calibration, recipe)
            info.update(qinfo)
    buffer, lowering = lower(program, example_input, backend, variant, skip_patterns=skip_patterns)
    info.update(lowering)
    return buffer, info


def lower(
    module: torch.nn.Module,
    example_input: torch.Tensor,
    backend: str,
    variant: str,
    *,
    skip_patterns: bool = True,
) -> tuple[bytes, dict[str, Any]]:
    """Export ``module`` (fp32, or a converted PT2E graph), lower it to ``backend``, serialise.

    Returns the program bytes and the lowering record: ``lowering``, the delegation counts,
    ``size_bytes``, ``executorch_version`` and ``torch_version``.
    """
    import torch
    from executorch.exir import to_edge_transform_and_lower

    info: dict[str, Any] = {}
    example_input = example_input.detach().to(torch.float32).contiguous()
    with torch.no_grad(), shallow_node_provenance():
        exported = torch.export.export(module, (example_input,))
        partitioner, info["lowering"] = _partitioner(backend, variant)
        payloads: list[str] = []
        with contextlib.ExitStack() as stack:
            if backend == "coreml":
                payloads = stack.enter_context(coreml.deterministic_payloads())
            if backend == "xnnpack" and skip_patterns:
                stack.enter_context(skip_unmatchable_patterns())
            edge = to_edge_transform_and_lower(exported, partitioner=[partitioner])
        if backend == "coreml":
            info["lowering"]["canonicalized_payloads"] = len(payloads)
            info["lowering"]["dropped_metadata"] = list(coreml.VOLATILE_METADATA)
        info.update(_delegation_counts(edge.exported_program().graph_module))
        buffer = edge.to_executorch().buffer
    info["size_bytes"] = len(buffer)
    info["executorch_version"] = check_executorch()
    info["torch_version"] = base_version(torch.__version__)
    return buffer, info
