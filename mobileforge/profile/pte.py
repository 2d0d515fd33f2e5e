"""A ``.pte``'s time per operator: run it in ExecuTorch's runtime with ETDump on, then read the
ETDump with ExecuTorch's Inspector.

ETDump records, per execution, every kernel the runtime calls (``native_call_<op>``) inside the
runtime's call of it (``OPERATOR_CALL``), each delegate call (``DELEGATE_CALL``) and, inside a
delegate, the operators the delegate reports (XNNPACK: each of its operators, e.g.
``Convolution (NHWC, QC8) IGEMM #3``, at 1 µs resolution). What a call ran is listed before the
call; the call's time beyond it becomes a layer of its own
(:data:`~mobileforge.profile.classify.DELEGATE_REST`, :data:`OPERATOR_REST`), so a run's layers
add up to its time inside operators without counting anything twice.

XNNPACK's operators carry no debug handle back to the exported graph (its delegate writes no
debug map), so an ETRecord would name only whole delegate calls: ``module`` stays None here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mobileforge.profile.classify import DELEGATE_REST

#: Events that are the runtime's frame, not an operator of the model.
FRAME_EVENTS = {"Method::execute", "Method::init", "Program::load_method"}
DELEGATE_CALL = "DELEGATE_CALL"
OPERATOR_CALL = "OPERATOR_CALL"
#: The name a runtime's call of a kernel gets for its time outside the kernel's own event.
OPERATOR_REST = "OPERATOR_CALL (outside its kernel)"


def load_with_etdump(path: str | Path) -> Any:
    """The program at ``path`` loaded with ETDump collection on (the runtime's bindings; the
    caller sized the threadpool first)."""
    from mobileforge.runtime.pte import bindings

    lib = bindings()
    return lib._load_program(
        str(path),
        enable_etdump=True,
        debug_buffer_size=0,  # times only: no intermediate outputs
        program_verification=lib.Verification.InternalConsistency,
    )


def run_with_etdump(path: str | Path, x: Any, runs: int, warmup: int, etdump: Path) -> list[float]:
    """Run ``warmup`` then ``runs`` inferences with ETDump on and write the ETDump to
    ``etdump``; returns each profiled run's end-to-end time (ms), timed around the call."""
    program = load_with_etdump(path)
    method = program.load_method("forward")
    for _ in range(max(1, warmup)):  # at least one: the first run pays one-time costs
        method([x])
    end_to_end = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        method([x])
        end_to_end.append((time.perf_counter_ns() - start) / 1e6)
    debug = etdump.with_suffix(".debug.bin")
    program.write_etdump_result_to_file(str(etdump), str(debug))
    debug.unlink(missing_ok=True)  # empty: debug_buffer_size=0
    return end_to_end


def etdump_runs(etdump: str | Path, runs: int) -> list[list[tuple[str, float]]]:
    """The last ``runs`` executions in an ETDump, each as its layers ``(name, ms)`` in order."""
    from executorch.devtools import Inspector

    inspector = Inspector(etdump_path=str(etdump))
    events = [
        event
        for block in inspector.event_blocks
        for event in block.events
        if event.perf_data is not None and event.name not in FRAME_EVENTS
    ]
    if not events:
        raise RuntimeError(f"{etdump} holds no operator events (was ETDump on?)")
    short = [e.name for e in events if len(e.perf_data.raw) < runs]
    if short:
        raise RuntimeError(f"{etdump}: fewer than {runs} executions recorded for {short[:3]}")
    return [run_layers(events, index) for index in range(-runs, 0)]


def run_layers(events: list[Any], index: int) -> list[tuple[str, float]]:
    """Execution ``index``'s layers ``(name, ms)`` from the Inspector's ``events`` (in their
    order), each call's own time apart from what it ran (nothing counted twice)."""
    layers: list[tuple[str, float]] = []
    inside: list[tuple[str, float]] = []  # a delegate's operators, until its call ends
    kernels: dict[int | None, float] = {}  # a kernel's time, until the call around it ends
    for event in events:
        ms = float(event.perf_data.raw[index])
        if event.is_delegated_op:
            inside.append((event.name, ms))
        elif event.name == DELEGATE_CALL:
            layers += inside
            layers.append((DELEGATE_REST, max(0.0, ms - sum(t for _, t in inside))))
            inside = []
        elif event.name == OPERATOR_CALL:  # holds the kernel of its instruction
            kernel = kernels.pop(event._instruction_id, 0.0)
            layers.append((OPERATOR_REST, max(0.0, ms - kernel)))
        else:
            layers.append((event.name, ms))
            kernels[event._instruction_id] = ms
    return layers + inside
