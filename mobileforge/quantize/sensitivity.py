"""Per-layer int8 sensitivity: the damage of quantizing one layer alone, for either quantizer.

Method (one calibration, then one fp32-speed pass per layer): the model is prepared and
calibrated exactly as for int8 (FX ``prepare_fx`` or PT2E ``prepare_pt2e``, the recipe's
observers), so every observer holds the statistics the real conversion would turn into scales.
Each observer is then replaced by a switch that is the identity, or fake-quantizes with that
observer's own ``calculate_qparams()`` when switched on. For one layer at a time, the switches
adjacent to it (its input and output activations and, in PT2E graphs, its weight; FX keeps
weight observers out of the graph, so the layer's weight is fake-quantized with the recipe's
weight observer) are switched on and the control images run through. Compared with the same
graph with every switch off (the fp32 model), that gives per layer:

* ``sqnr_db``: signal-to-quantization-noise ratio of the logits, ``10 log10(|ref|^2 / |ref -
  q|^2)``: lower is more damage; layers are ranked by it;
* ``top1_agreement``: share of images whose top-1 class is unchanged (percent).

Simulated quantization (``torch.fake_quantize_*``) rounds exactly as the int8 kernels do up to
their requantization arithmetic; the accuracy budget (:mod:`mobileforge.quantize.budget`) never
trusts the simulation, it measures the real converted model.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from mobileforge.quantize.layers import layer_weight, quantizable_layers

#: Recorded with every sensitivity artifact, so a reader knows what the numbers mean.
METHOD = (
    "one layer at a time quantized alone (its input, output and weight fake-quantized with the "
    "calibrated observers' own qparams, every other layer fp32); logits compared with fp32"
)


class _Switch(nn.Module):
    """Stands in for a calibrated observer: identity, or fake-quantization with its qparams."""

    def __init__(self, observer: nn.Module) -> None:
        super().__init__()
        scale, zero_point = observer.calculate_qparams()
        self.register_buffer("scale", scale.detach().float().reshape(-1))
        self.register_buffer("zero_point", zero_point.detach().to(torch.int32).reshape(-1))
        self.per_channel = self.scale.numel() > 1
        self.axis = int(getattr(observer, "ch_axis", 0))
        self.quant_min = int(observer.quant_min)
        self.quant_max = int(observer.quant_max)
        self.enabled = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fake_quantize(x) if self.enabled else x

    def fake_quantize(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_channel:
            return torch.fake_quantize_per_channel_affine(
                x, self.scale, self.zero_point, self.axis, self.quant_min, self.quant_max
            )
        return torch.fake_quantize_per_tensor_affine(
            x, float(self.scale), int(self.zero_point), self.quant_min, self.quant_max
        )


def _is_observer(module: Any) -> bool:
    return callable(getattr(module, "calculate_qparams", None)) and hasattr(module, "quant_min")


def _install_switches(prepared: torch.fx.GraphModule) -> dict[str, _Switch]:
    """Replace every observer module called by the graph with a switch; ``{target: switch}``."""
    switches: dict[str, _Switch] = {}
    for node in prepared.graph.nodes:
        if node.op != "call_module" or node.target in switches:
            continue
        module = prepared.get_submodule(node.target)
        if _is_observer(module):
            switch = _Switch(module)
            parent, _, leaf = node.target.rpartition(".")
            setattr(prepared.get_submodule(parent) if parent else prepared, leaf, switch)
            switches[node.target] = switch
    return switches


def _layer_of(node: torch.fx.Node, layers: dict[str, str]) -> str | None:
    """The layer a graph node computes: an FX module call, or a PT2E op by its module stack."""
    if node.op == "call_module" and node.target in layers:
        return node.target
    if node.op != "call_function":
        return None
    names = [path for path, _ in node.meta.get("nn_module_stack", {}).values()]
    inside = [name for name in names if name in layers]
    return max(inside, key=len) if inside else None


def _adjacent_switches(
    prepared: torch.fx.GraphModule, layers: dict[str, str], switches: dict[str, _Switch]
) -> dict[str, list[_Switch]]:
    """Per layer, the switches on its inputs (activation, PT2E weight) and outputs."""

    def switch_of(node: Any) -> _Switch | None:
        if isinstance(node, torch.fx.Node) and node.op == "call_module":
            return switches.get(node.target)
        return None

    adjacent: dict[str, list[_Switch]] = {name: [] for name in layers}
    for node in prepared.graph.nodes:
        layer = _layer_of(node, layers)
        if layer is None:
            continue
        for neighbour in [*node.all_input_nodes, *node.users]:
            switch = switch_of(neighbour)
            if switch is not None and all(switch is not s for s in adjacent[layer]):
                adjacent[layer].append(switch)
    return adjacent


@contextmanager
def _fake_quantized_weight(model: nn.Module, layer: str, weight_observer: Any) -> Iterator[None]:
    """FX only: the layer's weight fake-quantized as ``convert_fx`` would quantize it."""
    weight = layer_weight(model, layer)
    observer = weight_observer()
    observer(weight.detach())
    original = weight.detach().clone()
    with torch.no_grad():
        weight.copy_(_Switch(observer).fake_quantize(original))
    try:
        yield
    finally:
        with torch.no_grad():
            weight.copy_(original)


def sqnr_db(reference: torch.Tensor, quantized: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB (``inf`` when the outputs are identical)."""
    noise = float((reference - quantized).double().pow(2).sum())
    signal = float(reference.double().pow(2).sum())
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def top1_agreement(reference: torch.Tensor, quantized: torch.Tensor) -> float:
    return float((reference.argmax(1) == quantized.argmax(1)).double().mean() * 100)


@torch.no_grad()
def _logits(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    return torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def layer_sensitivity(
    prepared: torch.fx.GraphModule,
    fused: nn.Module,
    control: torch.Tensor,
    weight_observer: Callable[[], Any] | None = None,
    log: Callable[[str], Any] | None = None,
) -> list[dict[str, Any]]:
    """The damage of quantizing each quantizable layer of ``fused`` alone, most damaging first.

    ``prepared`` is the calibrated prepared model (it is modified: observers become switches).
    ``weight_observer`` is given for FX graphs, whose weights are not observed in the graph:
    the weights of ``prepared`` (FX prepare shares them with its modules) are fake-quantized with
    it, one layer at a time, and restored.
    """
    layers = quantizable_layers(fused)
    switches = _install_switches(prepared)
    adjacent = _adjacent_switches(prepared, layers, switches)
    reference = _logits(prepared, control)  # every switch off: the fp32 model
    results = []
    for index, (name, kind) in enumerate(layers.items(), start=1):
        on = adjacent[name]
        for switch in on:
            switch.enabled = True
        try:
            with (
                _fake_quantized_weight(prepared, name, weight_observer)
                if weight_observer is not None
                else contextlib.nullcontext()
            ):
                logits = _logits(prepared, control)
        finally:
            for switch in on:
                switch.enabled = False
        record = {
            "layer": name,
            "type": kind,
            "sqnr_db": sqnr_db(reference, logits),
            "top1_agreement": top1_agreement(reference, logits),
            "quantized_tensors": len(on) + (1 if weight_observer is not None else 0),
        }
        results.append(record)
        if log:
            log(
                f"sensitivity {index}/{len(layers)} {name} ({kind}): "
                f"SQNR {record['sqnr_db']:.1f} dB, top-1 agreement {record['top1_agreement']:.1f}%"
            )
    return rank(results)


def rank(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Most damaging first: lowest SQNR, then lowest agreement, then definition order."""
    order = sorted(
        range(len(results)),
        key=lambda i: (results[i]["sqnr_db"], results[i]["top1_agreement"], i),
    )
    return [{**results[i], "rank": position} for position, i in enumerate(order, start=1)]
