"""Cheaper FX node provenance while exporting and lowering (same graphs, same bytes).

Every FX pass that creates a node from another records where it came from
(``node.meta["from_node"]``, a list of ``torch.fx.traceback.NodeSource``), and each new
``NodeSource`` deep-copies the whole history of the node it came from. That history grows with
every pass, so ExecuTorch's lowering of a MobileNetV2 spends about a fifth of its CPU time in
``copy.deepcopy`` of provenance nobody reads here. ``NodeSource`` objects are never changed
after they are made, so a shallow copy of the list records exactly the same history.

:func:`shallow_node_provenance` swaps that one deep copy for a list copy, only while its block
runs and only where ``NodeSource.__init__`` still reads as this module expects (checked on the
source of the installed torch); anywhere else it changes nothing.

A ``NodeSource`` also names its node's graph by ``id(graph)``, a memory address: a program saved
with its provenance (``torch.export.save``) would differ from process to process.
:func:`number_graphs` numbers those graphs instead, keeping which nodes share a graph.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

#: The statement of ``NodeSource.__init__`` (torch 2.13) this module replaces.
_EXPECTED = 'copy.deepcopy(node.meta["from_node"])'


def _copy_history(value: Any, memo: dict[int, Any] | None = None) -> Any:
    return list(value) if isinstance(value, list) else copy.deepcopy(value, memo)


def _applicable(traceback: Any) -> bool:
    try:
        source = inspect.getsource(traceback.NodeSource.__init__)
    except (OSError, TypeError, AttributeError):
        return False
    return source.count("copy.") == 1 and _EXPECTED in source


@contextlib.contextmanager
def shallow_node_provenance() -> Iterator[bool]:
    """Within the block, new ``NodeSource`` share their ancestors instead of copying them.

    Yields whether the swap applies to the installed torch.
    """
    import torch.fx.traceback as traceback

    if not _applicable(traceback):
        yield False
        return
    original = traceback.copy
    traceback.copy = SimpleNamespace(copy=copy.copy, deepcopy=_copy_history)
    try:
        yield True
    finally:
        traceback.copy = original


def number_graphs(graph_module: torch.fx.GraphModule) -> int:
    """Replace the memory addresses that name graphs in the nodes' provenance by 1, 2, 3, ...

    A ``NodeSource`` names the graph its node was in by ``id(graph)``, an address that changes
    from process to process, so a saved program (``torch.export.save`` writes the provenance)
    would differ in every run. Graphs are numbered in order of first appearance (nodes in graph
    order, each history depth first); equal addresses get equal numbers and different ones
    different numbers, so what reads provenance (ExecuTorch groups nodes by their oldest
    ancestor's name and graph for debug handles) sees the same groups. Changes the sources in
    place (the histories of other graphs that share them too). Returns how many graphs.
    """
    numbers: dict[int, int] = {}
    seen: set[int] = set()
    for node in graph_module.graph.nodes:
        pending = list(reversed(node.meta.get("from_node") or []))
        while pending:
            source = pending.pop()
            if id(source) in seen:
                continue
            seen.add(id(source))
            source._dict = None  # its cached dict (and that of every source above it) is stale
            if source.node_info is not None:
                graph = source.node_info.graph_id
                source.node_info.graph_id = numbers.setdefault(graph, len(numbers) + 1)
            pending.extend(reversed(source.from_node))
    return len(numbers)
