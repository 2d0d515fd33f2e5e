"""``torch.jit.script`` safe from a stale entry in TorchScript's table of builtins.

TorchScript treats a module attribute as a builtin operator when ``id(value)`` is a key of
``torch.jit._builtins._builtin_table``. Adding an overload to an operator from Python
(``torch.library.Library.define``, as ``torch.ao.quantization`` and ExecuTorch do on import)
replaces the operator's packet object and frees the old one, but its id stays in the table. When
a later object, say a Conv2d's ``_reversed_padding_repeated_twice`` list, is allocated at that
address, scripting fails with "builtin cannot be used as a value". It depends on the allocator,
so it fails a job now and then (it failed CI in a cold run); importing
``torch.ao.quantization.quantize_fx`` leaves 4 such ids, ``executorch.exir`` 20.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: Namespaces defined in C++ only: their packets are never refreshed, and some of their names
#: are shared on purpose by Python functions TorchScript maps to them (``aten::wait``).
_NATIVE_NAMESPACES = frozenset({"aten", "prim"})


def forget_stale_builtins() -> int:
    """Drop the table's ids of operator objects that a refreshed packet let go; how many."""
    import torch
    from torch.jit import _builtins

    table = _builtins._get_builtin_table()
    live_ops: dict[str, int] = {}
    for namespace_name in list(torch.ops):
        if namespace_name in _NATIVE_NAMESPACES:
            continue
        namespace = getattr(torch.ops, namespace_name)
        for op_name in list(getattr(namespace, "_dir", ())):
            packet = getattr(namespace, op_name, None)
            if isinstance(packet, torch._ops.OpOverloadPacket):
                live_ops[packet._qualified_op_name] = id(packet._op)
    registered = {id(function) for function, _ in _builtins._builtin_ops}
    stale = [
        key
        for key, name in table.items()
        if name in live_ops and key != live_ops[name] and key not in registered
    ]
    for key in stale:
        del table[key]
    return len(stale)


def script(module: torch.nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script(module)`` after dropping stale builtin ids."""
    import torch

    forget_stale_builtins()
    return torch.jit.script(module)
