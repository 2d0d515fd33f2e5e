"""TorchScript lite-interpreter (.ptl) export per backend.

CPU: ``optimize_for_mobile`` where the torch build supports it, else ``torch.jit.freeze``
(folds constants, drops dropout). Freezing is not always a win: with the x86 int8 engine a frozen
module stores every packed weight twice (DESIGN.md: 7.6 MB frozen vs 4.0 MB scripted for
MobileNetV2), so the unfrozen scripted module is also serialised and the smaller of the two is
kept when it is as fast; the sidecar records both sizes, both timings and why, and
``optimization`` always names the path that produced the bytes written.
"""

from __future__ import annotations

import io
import statistics
import time
from typing import Any

import torch

from mobileforge import capabilities

# "As fast" for the size/speed trade-off: the smaller artifact is kept unless its median is more
# than this much slower. The margin is wide on purpose: freezing does not change which kernels
# run, so real differences are small, and a narrow margin would let timing noise (other jobs on
# the machine) flip the choice between two runs and break byte-identical rebuilds.
EQUAL_SPEED_TOLERANCE = 1.25
TIMING_RUNS = 30


class BackendUnavailable(RuntimeError):
    """The torch build lacks the passes a backend needs; the message names the build option."""


def script(model: torch.nn.Module, example: torch.Tensor) -> tuple[torch.jit.ScriptModule, str]:
    """Script ``model`` (FX GraphModules always script); fall back to tracing for odd user code."""
    try:
        return torch.jit.script(model.eval()), "torch.jit.script"
    except Exception:  # scripting rejects some Python; a trace is still a faithful export
        return torch.jit.trace(model.eval(), example), "torch.jit.trace"


def lite_bytes(module: torch.jit.ScriptModule) -> bytes:
    return module._save_to_buffer_for_lite_interpreter()


def time_lite_pair(
    first: bytes, second: bytes, example: torch.Tensor, runs: int = TIMING_RUNS
) -> tuple[float, float]:
    """Median latency (ms) of two lite-interpreter modules, timed alternately on ``example``.

    Alternating the runs exposes both modules to the same machine load, so their ratio is
    steadier than two back-to-back timing loops.
    """
    from torch.jit.mobile import _load_for_lite_interpreter

    modules = [_load_for_lite_interpreter(io.BytesIO(data)) for data in (first, second)]
    samples: list[list[float]] = [[], []]
    for module in modules:
        module(example)  # first-run allocations are not part of the comparison
    for _ in range(runs):
        for module, times in zip(modules, samples, strict=True):
            start = time.perf_counter()
            module(example)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples[0]), statistics.median(samples[1])


@torch.no_grad()
def export_ptl(
    model: torch.nn.Module, backend: str, example: torch.Tensor, log=print
) -> tuple[bytes, dict[str, Any]]:
    """Export ``model`` for ``backend``; returns the .ptl bytes and what produced them."""
    from torch.utils.mobile_optimizer import optimize_for_mobile

    scripted, how = script(model, example)
    info: dict[str, Any] = {"scripting": how}
    available, reason = capabilities.mobile_optimizer(backend)
    if backend != "cpu":
        if not available:
            raise BackendUnavailable(f"cannot export for backend {backend!r}: {reason}")
        info["optimization"] = f"optimize_for_mobile(backend={backend!r})"
        return lite_bytes(optimize_for_mobile(scripted, backend=backend)), info

    if available:
        optimized = lite_bytes(optimize_for_mobile(scripted))
        info["optimization"] = "optimize_for_mobile"
    else:
        optimized = lite_bytes(torch.jit.freeze(scripted.eval()))
        info["optimization"] = "torch.jit.freeze"
        info["optimize_for_mobile_unavailable"] = reason
    plain = lite_bytes(scripted)
    info["candidates"] = {info["optimization"]: {"size_bytes": len(optimized)}}
    info["candidates"]["scripted"] = {"size_bytes": len(plain)}
    if len(plain) >= len(optimized):
        info["choice"] = info["optimization"]
        info["choice_reason"] = "optimized module is not larger than the plain scripted one"
        return optimized, info

    optimized_ms, plain_ms = time_lite_pair(optimized, plain, example)
    info["candidates"][info["optimization"]]["median_ms"] = optimized_ms
    info["candidates"]["scripted"]["median_ms"] = plain_ms
    log(
        f"{info['optimization']}: {len(optimized)} B {optimized_ms:.3f} ms; "
        f"scripted: {len(plain)} B {plain_ms:.3f} ms"
    )
    ratio = len(optimized) / len(plain)
    if plain_ms <= optimized_ms * EQUAL_SPEED_TOLERANCE:
        info["choice_reason"] = (
            f"{info['optimization']} output is {ratio:.2f}x the size of the plain scripted module "
            f"and not faster ({optimized_ms:.3f} vs {plain_ms:.3f} ms median): kept the smaller"
        )
        info["optimization"] = info["choice"] = "torch.jit.script (not frozen)"
        return plain, info
    info["choice"] = info["optimization"]
    info["choice_reason"] = (
        f"the {1 / ratio:.2f}x smaller scripted module is slower "
        f"({plain_ms:.3f} vs {optimized_ms:.3f} ms median)"
    )
    return optimized, info
