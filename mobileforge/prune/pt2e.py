"""Magnitude pruning of a PT2E-converted int8 graph (the ``.pte`` path's ``int8_pruned``).

The same rule as the ``.ptl`` path (:mod:`mobileforge.prune.unstructured`), applied to the frozen
int8 constants of a ``convert_pt2e`` graph instead of quantized modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch


def prune_amount(prune: dict) -> float:
    """Validate pruning settings (the ``.ptl`` path's schema) and return the amount."""
    method = prune.get("method", "l1_unstructured")
    if method != "l1_unstructured":
        raise ValueError(f"int8_pruned supports method 'l1_unstructured' only, got {method!r}")
    amount = float(prune["amount"])
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"prune amount must be in [0, 1), got {amount}")
    return amount


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


def _prune_weights(module: torch.fx.GraphModule, amount: float) -> dict[str, Any]:
    """L1-unstructured pruning of every conv/linear weight of a ``convert_pt2e`` graph.

    Same method as the ``.ptl`` path: per weight tensor, the ``amount`` fraction of entries with
    the smallest float magnitude is zeroed, chosen by the ``.ptl`` path's own
    :func:`mobileforge.prune.unstructured.smallest_magnitude_mask` (L1Unstructured's count). For an
    int8 weight (a frozen int8 constant feeding a dequantize op) the magnitude is the dequantized
    value ``|(q - zero_point) * scale|``; zeroed entries are set to the zero point, so they
    dequantize to exactly 0, and scales are kept. A conv/linear the quantizer left in float is
    pruned in float. Mutates ``module`` in place and returns pruning statistics.
    """
    import torch

    from mobileforge.prune.unstructured import smallest_magnitude_mask

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


def prune_converted(module: torch.fx.GraphModule, prune: dict) -> tuple[float, dict[str, Any]]:
    """Prune a ``convert_pt2e`` module in place; returns (sparsity, record for the sidecar)."""
    amount = prune_amount(prune)
    stats = _prune_weights(module, amount)
    sparsity = stats.pop("sparsity")
    return sparsity, {"method": "l1_unstructured", "amount": amount, **stats}
