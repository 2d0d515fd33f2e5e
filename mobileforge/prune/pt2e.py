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


class _Weight:
    """One prunable weight of a converted graph: an int8 constant (with its dequantization) or a
    float one the quantizer left alone, with the original values to prune from."""

    def __init__(self, tensor: torch.Tensor, scale: Any = None, zero_point: Any = None) -> None:
        import torch

        self.tensor = tensor
        self.original = tensor.detach().clone()
        self.is_int8 = scale is not None
        if self.is_int8:
            self.zero_point = torch.as_tensor(zero_point, dtype=torch.int64)
            self.magnitude = (
                (self.original.to(torch.int64) - self.zero_point).to(torch.float32)
                * torch.as_tensor(scale, dtype=torch.float32)
            ).abs()
        else:
            self.magnitude = self.original.abs()
        self._order: torch.Tensor | None = None

    def zeros(self) -> int:
        import torch

        if self.is_int8:
            return int((self.tensor.to(torch.int64) == self.zero_point).sum())
        return int((self.tensor == 0).sum())

    def prune(self, amount: float) -> int:
        """Set the tensor to its original pruned by ``amount``; returns its zero count."""
        import torch

        from mobileforge.prune.unstructured import magnitude_order, smallest_magnitude_mask

        if self._order is None:  # sorted once: a search prunes the same weight many times
            self._order = magnitude_order(self.magnitude)
        smallest = smallest_magnitude_mask(self.magnitude, amount, self._order)
        with torch.no_grad():
            if self.is_int8:
                zero = self.zero_point.expand_as(self.original)
                values = torch.where(smallest, zero, self.original.to(torch.int64))
                self.tensor.copy_(values.to(self.original.dtype))
                return int((values == zero).sum())
            self.tensor.copy_(self.original.masked_fill(smallest, 0.0))
            return int((self.tensor == 0).sum())


def _layer_name(node: torch.fx.Node) -> str:
    """The module a conv/linear node came from (the deepest ``nn_module_stack`` entry)."""
    stack = node.meta.get("nn_module_stack") or {}
    paths = [path for path, _ in stack.values()]
    return paths[-1] if paths else node.name


def prunable_weights(module: torch.fx.GraphModule) -> dict[str, _Weight]:
    """Every conv/linear weight of a ``convert_pt2e`` graph, by the layer it belongs to."""
    import torch

    weights: dict[str, _Weight] = {}
    seen: set[str] = set()  # a weight shared by several layers is pruned (and counted) once
    for node in module.graph.nodes:
        if node.op != "call_function" or _op_base_name(node.target) not in _PRUNABLE_OPS:
            continue
        weight_node = node.args[1]
        if not isinstance(weight_node, torch.fx.Node):
            raise ValueError(f"cannot prune {node.name}: its weight is not a graph value")
        constant = weight_node if weight_node.op == "get_attr" else weight_node.args[0]
        if isinstance(constant, torch.fx.Node) and constant.op == "get_attr":
            if constant.target in seen:
                continue
            seen.add(constant.target)
        if weight_node.op == "get_attr":  # float weight the quantizer did not annotate
            weights[_layer_name(node)] = _Weight(_get_attr(module, weight_node.target))
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
        weights[_layer_name(node)] = _Weight(q, scale, zero_point)
    if not weights:
        raise ValueError("int8_pruned: the model has no conv/linear weights to prune")
    return weights


class ConvertedLayers:
    """Like :class:`mobileforge.prune.unstructured.QuantizedLayers`, for a converted graph."""

    def __init__(self, module: torch.fx.GraphModule) -> None:
        self.model = module
        self.weights = prunable_weights(module)
        self.sizes = {name: weight.original.numel() for name, weight in self.weights.items()}
        self._touched: set[str] = set()

    def apply(self, amounts: dict[str, float]) -> torch.fx.GraphModule:
        for name in self._touched | set(amounts):
            self.weights[name].prune(amounts.get(name, 0.0))
        self._touched = {name for name, amount in amounts.items() if amount}
        return self.model

    def sparsity(self) -> float:
        """Share of zero weights (int8: at their zero point) over every prunable weight."""
        zeros = sum(weight.zeros() for weight in self.weights.values())
        return zeros / sum(self.sizes.values())


def _prune_weights(
    module: torch.fx.GraphModule, amount: float, layer_amounts: dict[str, float] | None = None
) -> dict[str, Any]:
    """L1-unstructured pruning of every conv/linear weight of a ``convert_pt2e`` graph.

    Same method as the ``.ptl`` path: per weight tensor, the ``amount`` fraction (or
    ``layer_amounts[layer]``, 0 where absent) of entries with the smallest float magnitude is
    zeroed, chosen by the ``.ptl`` path's own
    :func:`mobileforge.prune.unstructured.smallest_magnitude_mask` (L1Unstructured's count). For an
    int8 weight (a frozen int8 constant feeding a dequantize op) the magnitude is the dequantized
    value ``|(q - zero_point) * scale|``; zeroed entries are set to the zero point, so they
    dequantize to exactly 0, and scales are kept. A conv/linear the quantizer left in float is
    pruned in float. Mutates ``module`` in place and returns pruning statistics.
    """
    weights = prunable_weights(module)
    zeros = total = 0
    for name, weight in weights.items():
        zeros += weight.prune(amount if layer_amounts is None else layer_amounts.get(name, 0.0))
        total += weight.original.numel()
    n_int8 = sum(weight.is_int8 for weight in weights.values())
    return {
        "pruned_int8_tensors": n_int8,
        "pruned_float_tensors": len(weights) - n_int8,
        "pruned_elements_total": total,
        "sparsity": zeros / total,
    }


def prune_converted(module: torch.fx.GraphModule, prune: dict) -> tuple[float, dict[str, Any]]:
    """Prune a ``convert_pt2e`` module in place; returns (sparsity, record for the sidecar).

    ``prune["layer_amounts"]`` (optional) gives each layer its own amount (see
    :mod:`mobileforge.prune.allocation`); without it every weight loses ``prune["amount"]``.
    """
    amount = prune_amount(prune)
    stats = _prune_weights(module, amount, prune.get("layer_amounts"))
    sparsity = stats.pop("sparsity")
    return sparsity, {"method": "l1_unstructured", "amount": amount, **stats}
