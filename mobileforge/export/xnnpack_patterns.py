"""XNNPACK lowering without building pattern graphs that cannot match.

Two of the XNNPACK delegate's passes (``ConvertToUpsampleBilinear2d`` and ``ConvertToSDPAPass``)
look for decomposed bilinear upsampling and attention by subgraph matching, and build their
pattern graphs first: they export and lower small modules of their own, about 3-4 s of CPU in
every lowering process here, a third of lowering a small CNN. A pattern can only match a graph
that holds every operator of the pattern; executorch 1.5.1's bilinear patterns all contain
``aten.upsample_bilinear2d.vec`` and its SDPA patterns all contain ``aten._softmax.default`` and
``aten.bmm.default`` (``tests/test_pte.py`` checks this against the installed executorch). While
:func:`skip_unmatchable_patterns` is active, a pass whose required operators are missing from the
graph it is given runs with an empty pattern list: it matches nothing, as it would have, and does
everything else it does (recompile, re-trace) unchanged, so the program bytes are identical.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

#: Operators every pattern of a pass contains, by pass: (pattern module, getter, required ops).
REQUIRED_OPS = {
    "ConvertToUpsampleBilinear2d": (
        "bilinear_2d",
        "get_graphs_dict",
        {"aten.upsample_bilinear2d.vec"},
    ),
    "ConvertToSDPAPass": ("sdpa", "get_graphs", {"aten._softmax.default", "aten.bmm.default"}),
}


def graph_ops(graph_module: Any) -> set[str]:
    """Names of the operators a graph calls (``aten.bmm.default``), edge or aten dialect."""
    names = set()
    for node in graph_module.graph.nodes:
        if node.op == "call_function":
            names.add(getattr(node.target, "__name__", None) or str(node.target))
    return names


def _guarded(call: Any, patterns: Any, getter: str, required: set[str]) -> Any:
    empty: Any = {} if getter.endswith("dict") else []

    def guarded_call(self: Any, graph_module: Any) -> Any:
        if required <= graph_ops(graph_module):
            return call(self, graph_module)
        original = getattr(patterns, getter)
        setattr(patterns, getter, lambda: empty)
        try:
            return call(self, graph_module)
        finally:
            setattr(patterns, getter, original)

    return guarded_call


@contextlib.contextmanager
def skip_unmatchable_patterns() -> Iterator[None]:
    """While active, XNNPACK's pattern passes skip pattern graphs that cannot match."""
    from executorch.backends.xnnpack._passes import convert_to_sdpa, convert_to_upsample_bilinear2d
    from executorch.backends.xnnpack.partition.graphs import bilinear_2d, sdpa

    passes = {
        "ConvertToUpsampleBilinear2d": convert_to_upsample_bilinear2d.ConvertToUpsampleBilinear2d,
        "ConvertToSDPAPass": convert_to_sdpa.ConvertToSDPAPass,
    }
    modules = {"bilinear_2d": bilinear_2d, "sdpa": sdpa}
    originals = {name: cls.call for name, cls in passes.items()}
    try:
        for name, cls in passes.items():
            module, getter, required = REQUIRED_OPS[name]
            cls.call = _guarded(originals[name], modules[module], getter, required)
        yield
    finally:
        for name, cls in passes.items():
            cls.call = originals[name]
