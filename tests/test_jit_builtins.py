"""Scripting survives the stale ids a refreshed operator packet leaves in TorchScript's table.

A stale id is harmless until another object is allocated at its address; that happens now and
then (a cold CI run failed on it). The test makes both halves happen on purpose: a real refresh,
through ``torch.library`` as ``torch.ao.quantization`` does it, and a collision, by giving the
stale name to the id of the attribute the CI run failed on.
"""

from __future__ import annotations

import pytest
import torch
from torch.jit import _builtins

from mobileforge import jit_builtins

NAMESPACE = "mobileforge_test_stale"


@pytest.fixture(scope="module")
def refreshed_op():
    library = torch.library.Library(NAMESPACE, "DEF")
    library.define("twice(Tensor x) -> Tensor")
    packet = getattr(torch.ops, NAMESPACE).twice
    library.define("twice.scaled(Tensor x, float scale) -> Tensor")  # refreshes the packet
    yield f"{NAMESPACE}::twice", packet
    del library


def ids_named(name: str) -> set[int]:
    return {key for key, value in _builtins._get_builtin_table().items() if value == name}


def test_refreshing_a_packet_leaves_a_stale_id_that_is_forgotten(refreshed_op):
    name, packet = refreshed_op
    assert len(ids_named(name)) >= 2  # the freed operator object's id and the live one's
    assert jit_builtins.forget_stale_builtins() >= 1
    assert ids_named(name) == {id(packet._op)}
    assert jit_builtins.forget_stale_builtins() == 0
    assert _builtins._find_builtin(torch.add) == "aten::add"  # the rest of the table is kept


def test_a_module_attribute_at_a_stale_address_still_scripts(refreshed_op):
    name, _ = refreshed_op
    conv = torch.nn.Conv2d(3, 4, 3)
    table = _builtins._get_builtin_table()
    table[id(conv._reversed_padding_repeated_twice)] = name  # what the allocator did in CI
    try:
        with pytest.raises(RuntimeError, match="builtin cannot be used as a value"):
            torch.jit.script(conv)
        scripted = jit_builtins.script(conv)
    finally:
        table.pop(id(conv._reversed_padding_repeated_twice), None)
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(scripted(x), conv(x))
