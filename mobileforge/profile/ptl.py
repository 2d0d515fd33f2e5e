"""A ``.ptl``'s time per operator: the lite interpreter under ``torch.profiler``.

Each profiled run is wrapped in a ``record_function`` scope; the operators the interpreter
calls directly inside it (``quantized::conv2d_relu``, ``aten::dequantize``) are the layers, their
own children (scalar reads, allocation) are inside their time. Module names come from a debug
copy of the same program (:mod:`mobileforge.profile.ptl_modules`): the artifact itself is saved
without mobile debug info, and adding it would change its bytes.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from mobileforge.profile.layers import numbered

#: The scope each profiled run is recorded in.
RUN_SCOPE = "mobileforge.profile.run"


def _timed(module: Any, x: Any) -> float:
    start = time.perf_counter_ns()
    module(x)
    return (time.perf_counter_ns() - start) / 1e6


def profile_ptl(
    path: str, x: Any, runs: int, warmup: int
) -> tuple[list[list[tuple[str, float]]], list[float], list[float]]:
    """Load ``path`` in the lite interpreter (the caller set threads and the quantized engine),
    run ``warmup``, then ``runs`` unprofiled and ``runs`` profiled inferences; returns each
    profiled run's layers ``(name, ms)``, its end-to-end time and each unprofiled run's (ms).

    The profiler costs about 2 µs per event it records (an operator and the calls inside it):
    the unprofiled runs show how much of the profiled runs' time it added."""
    import torch
    import torch.jit.mobile
    from torch.profiler import ProfilerActivity, profile, record_function

    module = torch.jit.mobile._load_for_lite_interpreter(str(path))
    with torch.inference_mode():
        for _ in range(max(1, warmup)):
            module(x)
        unprofiled = [_timed(module, x) for _ in range(runs)]
        end_to_end = []
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            for _ in range(runs):
                start = time.perf_counter_ns()
                with record_function(RUN_SCOPE):
                    module(x)
                end_to_end.append((time.perf_counter_ns() - start) / 1e6)
    result = _runs(profiler.events(), runs)
    if not any(result):
        raise RuntimeError(f"torch.profiler recorded no operator of {path} inside its runs")
    return result, end_to_end, unprofiled


def _runs(events: Any, runs: int) -> list[list[tuple[str, float]]]:
    """Each profiled run's operators ``(name, ms)``: the events right inside its scope."""
    scopes = sorted((e for e in events if e.name == RUN_SCOPE), key=lambda e: e.time_range.start)
    if len(scopes) != runs:
        raise RuntimeError(f"torch.profiler recorded {len(scopes)} of {runs} run scopes")
    children: dict[int, list[Any]] = {id(scope): [] for scope in scopes}
    for event in events:
        parent = event.cpu_parent
        if parent is not None and id(parent) in children:
            children[id(parent)].append(event)
    result = []
    for scope in scopes:
        ops = sorted(children[id(scope)], key=lambda e: e.time_range.start)
        result.append([(e.name, e.time_range.elapsed_us() / 1000.0) for e in ops])
    return result


def module_names(path: str, x: Any, run: list[tuple[str, float]]) -> dict[str, str | None]:
    """The module of each layer of ``run`` (a profiled run of ``path``, layer names numbered as
    :func:`mobileforge.profile.layers.numbered` does), where it can be told: from a debug copy
    of the same program, checked to run the same operators in the same order. Raises
    ValueError saying why where no module can be told."""
    import torch
    import torch.jit.mobile
    from torch.profiler import ProfilerActivity, profile, record_function

    from mobileforge.profile import ptl_modules

    names = [name for name, _ in run]
    if len(list(torch.jit.load(path).named_modules())) == 1:
        raise ValueError("the .ptl holds a frozen module (torch.jit.freeze inlined every "
                         "submodule): no module is left to name")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mobileforge-ptl-debug-") as tmp:
        copy = ptl_modules.debug_copy(path, tmp)
        module = torch.jit.mobile._load_for_lite_interpreter(copy)
        with torch.inference_mode():
            module(x)
            with profile(activities=[ProfilerActivity.CPU]) as profiler:
                with record_function(RUN_SCOPE):
                    module(x)
        [copy_run] = _runs(profiler.events(), 1)
        if [name for name, _ in copy_run] != names:
            raise ValueError("the debug copy ran other operators than the artifact")
        by_index = ptl_modules.layer_modules(names, copy, torch.jit.load(path))
    return {
        layer: by_index[index]
        for index, (layer, _) in enumerate(numbered(run))
        if index in by_index
    }
