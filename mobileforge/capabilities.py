"""What the installed torch build can do, found by trying it (never assumed).

``optimize_for_mobile`` needs XNNPACK (and the Vulkan/Metal rewrite passes for those backends);
CPU wheels may ship without them. Each probe runs the real pass on a tiny scripted module and
returns ``(available, reason)`` so a job can fall back or fail with the build option to enable.
"""

from __future__ import annotations

import functools

# The build option each optimize_for_mobile backend needs, for the error a user sees.
BUILD_OPTION = {"cpu": "USE_XNNPACK=1", "vulkan": "USE_VULKAN=1", "metal": "USE_PYTORCH_METAL=1"}


@functools.cache
def mobile_optimizer(backend: str = "cpu") -> tuple[bool, str]:
    """Whether ``optimize_for_mobile(..., backend=backend)`` works in this torch build."""
    import torch
    from torch.utils.mobile_optimizer import optimize_for_mobile

    if backend == "vulkan" and not torch.is_vulkan_available():
        return (
            False,
            f"torch {torch.__version__} was built without Vulkan ({BUILD_OPTION[backend]})",
        )
    from mobileforge import jit_builtins

    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    probe = jit_builtins.script(tiny)
    try:
        optimize_for_mobile(probe, backend=backend)
    except Exception as error:  # the pass raises RuntimeError/AssertionError variants
        first_line = next((line for line in str(error).splitlines() if line.strip()), "")
        return False, (
            f"optimize_for_mobile(backend={backend!r}) is unavailable in torch "
            f"{torch.__version__}: "
            f"rebuild torch with {BUILD_OPTION[backend]} ({first_line.strip()[:160]})"
        )
    return True, "ok"
