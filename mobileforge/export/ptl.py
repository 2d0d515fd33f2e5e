"""TorchScript lite-interpreter (.ptl) export per backend.

CPU: ``optimize_for_mobile`` where the torch build supports it, else ``torch.jit.freeze``
(folds constants, drops dropout). Freezing is not always smaller: with the x86 int8 engine a
frozen module stores every packed weight twice (up to 2x the bytes of the plain scripted module),
so the plain scripted module is serialised too and the smaller of the two is kept; on equal size
the optimized one. The choice is by size, never by a timing: freezing does not change which
kernels run (interleaved timings differ by a few percent at most), and a timing would make the
bytes of an artifact depend on the load of the machine that built it. The sidecar records both
sizes under ``candidates`` and why under ``choice_reason``; ``optimization`` names the path that
produced the bytes written.
"""

from __future__ import annotations

from typing import Any

import torch

from mobileforge import capabilities, jit_builtins

#: ``optimization`` (and ``choice``) when the plain scripted module is kept.
SCRIPTED = "torch.jit.script (not frozen)"


class BackendUnavailable(RuntimeError):
    """The torch build lacks the passes a backend needs; the message names the build option."""


def script(model: torch.nn.Module, example: torch.Tensor) -> tuple[torch.jit.ScriptModule, str]:
    """Script ``model`` (FX GraphModules always script); fall back to tracing for odd user code."""
    try:
        return jit_builtins.script(model.eval()), "torch.jit.script"
    except Exception:  # scripting rejects some Python; a trace is still a faithful export
        return torch.jit.trace(model.eval(), example), "torch.jit.trace"


def lite_bytes(module: torch.jit.ScriptModule) -> bytes:
    return module._save_to_buffer_for_lite_interpreter()


@torch.no_grad()
def export_ptl(
    model: torch.nn.Module, backend: str, example: torch.Tensor, log=print
) -> tuple[bytes, dict[str, Any]]:
    """Export ``model`` for ``backend``; returns the .ptl bytes and what produced them.

    On CPU the smaller of the optimized (``optimize_for_mobile`` or frozen) and the plain
    scripted serialisation is returned, the optimized one on equal size: the same inputs give
    the same bytes on every run, however loaded the machine is.
    """
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
        path = "optimize_for_mobile"
    else:
        optimized = lite_bytes(torch.jit.freeze(scripted.eval()))
        path = "torch.jit.freeze"
        info["optimize_for_mobile_unavailable"] = reason
    plain = lite_bytes(scripted)
    info["candidates"] = {
        path: {"size_bytes": len(optimized)},
        "scripted": {"size_bytes": len(plain)},
    }
    log(f"{path}: {len(optimized)} B; scripted: {len(plain)} B")
    if len(optimized) <= len(plain):
        info["optimization"] = info["choice"] = path
        info["choice_reason"] = f"{path} output is not larger than the plain scripted module"
        return optimized, info
    info["optimization"] = info["choice"] = SCRIPTED
    info["choice_reason"] = (
        f"{path} output is {len(optimized) / len(plain):.2f}x the size of the plain scripted "
        "module: kept the smaller (the choice is by size; freezing does not change the kernels)"
    )
    return plain, info
