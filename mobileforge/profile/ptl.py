"""A ``.ptl``'s time per operator: the lite interpreter under ``torch.profiler``.

Each profiled run is wrapped in a ``record_function`` scope; the operators the interpreter
calls directly inside it (``quantized::conv2d_relu``, ``aten::dequantize``) are the layers, their
own children (scalar reads, allocation) are inside their time. Module names would need the
``.ptl`` saved with ``_save_mobile_debug_info=True``; the workflow's are not (that would change
their bytes), so ``module`` stays None.
"""

from __future__ import annotations

import time
from typing import Any

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
    events = profiler.events()
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
    if not any(result):
        raise RuntimeError(f"torch.profiler recorded no operator of {path} inside its runs")
    return result, end_to_end, unprofiled
