"""Which module of the model each operator of a ``.ptl`` came from, without changing its bytes.

The workflow's ``.ptl`` files carry no mobile debug info. A ``.ptl`` also holds the TorchScript
archive it was saved from, so a debug copy of the same program is made: ``torch.jit.load`` it,
re-save with ``_save_mobile_debug_info=True``. The copy is only used if its ``forward`` has the
same operator instructions in the same order as the artifact's (read from both
``bytecode.pkl``) and a run of it calls the same operators in the same order.

torch.profiler does not hand a lite-interpreter event's debug handle to Python, so events are
matched to instructions by name and occurrence: the k-th call of an operator in a run is the
k-th ``OP`` instruction of that name in ``forward``, used only where a run calls an operator
exactly as many times as ``forward`` has instructions of it (an operator in a loop or a branch
not taken is left unmapped). Each instruction's debug handle gives its inlined call stack: the
modules it was called through as ``(type, attribute name)``. The attribute name is only the
last step of the path (an FX GraphModule calls ``features.0.0`` as ``getattr(...)`` chains, the
call stack says ``0``), so full paths come from the scripted module's own ``forward`` graph: its
module calls in order, each path resolved through its ``prim::GetAttr`` chain, matched in order
to the call sites of the call stacks by type and attribute name.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

#: A module on an operator's call stack: (qualified type name, attribute name, call site).
Frame = tuple[str, str, int]


def _unpickle(archive: zipfile.ZipFile, name: str) -> Any:
    from torch.utils.show_pickle import DumpUnpickler

    [path] = [n for n in archive.namelist() if n.split("/", 1)[-1] == name]
    return DumpUnpickler(io.BytesIO(archive.read(path))).load()


def _intlist(value: Any) -> list[int]:
    # DumpUnpickler keeps torch.jit._pickle.build_intlist([...]) as a call with its argument
    return list(value.args[0]) if hasattr(value, "args") else list(value)


def _method(bytecode: Any, suffix: str) -> tuple[str, dict[str, Any]]:
    for entry in bytecode[1:]:
        if entry[0].endswith(suffix):
            return entry[0], dict(entry[1])
    raise ValueError(f"no method *{suffix} in the bytecode")


def forward_operators(data: bytes) -> list[str]:
    """The operator (with overload) of each ``OP`` instruction of ``forward`` of a ``.ptl``
    (bytes), in order. Constants may be stored otherwise by a re-save (a frozen module's
    folded lists come back built by instructions), the operators are the program's work."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        _, table = _method(_unpickle(archive, "bytecode.pkl"), ".forward")
    operators = [op[0] + (f".{op[1]}" if op[1] else "") for op in table["operators"]]
    return [operators[x] for op, x, _ in table["instructions"] if op == "OP"]


def _frames(callstack: Any) -> list[Frame]:
    """The modules of an inlined call stack, outermost first (functions and self calls out)."""
    frames: list[Frame] = []
    while callstack is not None:
        instance, site, callee, _function = callstack
        if instance is not None and instance[1] != "SELF":
            frames.append((instance[0], instance[1], int(site)))
        callstack = callee
    return frames


def forward_ops(data: bytes) -> list[tuple[str, list[Frame]]]:
    """Each ``OP`` instruction of ``forward`` of a ``.ptl`` saved with mobile debug info, in
    order: operator name (no overload) and the modules it was called through."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = {n.split("/", 1)[-1] for n in archive.namelist()}
        if "callstack_debug_map.pkl" not in names:
            raise ValueError("the .ptl was saved without mobile debug info")
        name, table = _method(_unpickle(archive, "bytecode.pkl"), ".forward")
        handles_by_method = {
            entry[0]: _intlist(dict(entry[1])["function_debug_handles"][0])
            for entry in _unpickle(archive, "mobile_debug_handles.pkl")[1:]
        }
        callstacks = {int(e[0]): e[3] for e in _unpickle(archive, "callstack_debug_map.pkl")}
    handles = handles_by_method[name]
    instructions = table["instructions"]
    if len(handles) != len(instructions):
        raise ValueError(f"{len(handles)} debug handles for {len(instructions)} instructions")
    operators = [op[0] for op in table["operators"]]
    return [
        (operators[inst[1]], _frames(callstacks.get(handle)))
        for inst, handle in zip(instructions, handles, strict=True)
        if inst[0] == "OP"
    ]


def _type_name(module: Any) -> str:
    return module._c._type().qualified_name()


def module_calls(scripted: Any) -> list[tuple[str, str, str, str]]:
    """The module calls of a scripted module's ``forward``, in graph order, nested calls after
    their caller: each as its caller's path, the callee's type and attribute name, and its
    dotted path in ``named_modules``."""
    calls: list[tuple[str, str, str, str]] = []

    def walk(module: Any, method: str, path: str) -> None:
        graph = getattr(module, method).graph
        self_value = next(iter(graph.inputs()))

        def blocks(block: Any) -> None:
            for node in block.nodes():
                for inner in node.blocks():
                    blocks(inner)
                if node.kind() != "prim::CallMethod":
                    continue
                target = node.inputsAt(0)
                names: list[str] = []
                while target is not self_value and target.node().kind() == "prim::GetAttr":
                    names.insert(0, target.node().s("name"))
                    target = target.node().inputsAt(0)
                if target is not self_value:
                    continue  # a module passed in, not one of ours
                if not names:  # another method of the same module
                    walk(module, node.s("name"), path)
                    continue
                child = module
                for name in names:
                    child = getattr(child, name)
                child_path = ".".join(p for p in (path, *names) if p)
                calls.append((path, _type_name(child), names[-1], child_path))
                walk(child, node.s("name"), child_path)

        blocks(graph)

    walk(scripted, "forward", "")
    return calls


def op_paths(ops: list[tuple[str, list[Frame]]], scripted: Any) -> list[str | None]:
    """The dotted module path of each op of :func:`forward_ops` (None where it was called
    outside any module), resolved through :func:`module_calls`: each call site, in the order
    its first operator comes, is the next call of its caller with its type and attribute name.
    Raises ValueError where a call site has none."""
    calls = module_calls(scripted)
    resolved: dict[tuple[Frame, ...], str] = {}
    next_call: dict[str, int] = {}  # per caller path: where its next call is looked for

    def resolve(frames: tuple[Frame, ...]) -> str:
        if frames in resolved:
            return resolved[frames]
        caller = resolve(frames[:-1]) if len(frames) > 1 else ""
        kind, name, _ = frames[-1]
        for index in range(next_call.get(caller, 0), len(calls)):
            if calls[index][:3] == (caller, kind, name):
                next_call[caller] = index + 1
                resolved[frames] = calls[index][3]
                return resolved[frames]
        raise ValueError(f"no call of {kind} {name!r} by {caller or 'the model'} in forward")

    return [resolve(tuple(frames)) if frames else None for _, frames in ops]


def debug_copy(path: str, directory: str) -> str:
    """A debug copy of the ``.ptl`` at ``path`` in ``directory`` (same program, debug info
    added); raises ValueError where its ``forward`` calls other operators than the artifact's."""
    import torch

    scripted = torch.jit.load(path)
    copy = f"{directory}/debug.ptl"
    scripted._save_for_lite_interpreter(copy, _save_mobile_debug_info=True)
    with open(path, "rb") as f:
        original = forward_operators(f.read())
    with open(copy, "rb") as f:
        if forward_operators(f.read()) != original:
            raise ValueError("the debug copy's forward calls other operators than the artifact's")
    return copy


def layer_modules(runs_names: list[str], copy: str, scripted: Any) -> dict[int, str | None]:
    """For one run's operator names (in order), the module path of each index whose operator
    a run calls exactly as often as ``forward`` has instructions of it."""
    with open(copy, "rb") as f:
        ops = forward_ops(f.read())
    paths = op_paths(ops, scripted)
    static: dict[str, list[str | None]] = {}
    for (name, _), module in zip(ops, paths, strict=True):
        static.setdefault(name, []).append(module)
    counts: dict[str, int] = {}
    for name in runs_names:
        counts[name] = counts.get(name, 0) + 1
    seen: dict[str, int] = {}
    result: dict[int, str | None] = {}
    for index, name in enumerate(runs_names):
        k = seen.get(name, 0)
        seen[name] = k + 1
        if len(static.get(name, [])) == counts[name]:
            result[index] = static[name][k]
    return result
