"""ExecuTorch's host runtime without its compiler: load, run, evaluate a ``.pte``; threads.

``executorch.runtime`` and ``executorch.extension.pybindings.portable_lib`` both import
``executorch.exir`` (the whole compiler, with torch._dynamo and inductor) before they reach the
compiled bindings, only to define a warning class: about 2.5 s of CPU in every evaluation and
benchmark process here, against 4 ms for the bindings themselves. This module talks to the
bindings (``executorch.extension.pybindings._C``, what ``portable_lib`` re-exports) directly,
with the same calls ``executorch.runtime`` makes (``_load_program``, ``load_method``, the
method's ``__call__``), and falls back to ``portable_lib`` where a wheel lays them out otherwise.

Which delegates run here is asked of the runtime, never guessed: the pip wheel for Linux x86-64
registers XNNPACK (plus QNN and OpenVINO), not Vulkan or Core ML.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mobileforge.versions import check_executorch

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

#: Delegate ids as each backend's runtime registers them (and the lowered program records them).
DELEGATE_IDS = {"xnnpack": "XnnpackBackend", "vulkan": "VulkanBackend", "coreml": "CoreMLBackend"}

# Programs handed out by load_pte(): XNNPACK captures the threadpool when a method is loaded,
# so resetting the threadpool while any of them is alive would leave them a dangling pointer.
_LIVE: weakref.WeakSet[LoadedPte] = weakref.WeakSet()


def bindings() -> ModuleType:
    """The compiled ExecuTorch bindings (imports torch first: they link against libtorch)."""
    import torch  # noqa: F401  (loads libtorch for the extension's symbols)

    try:
        from executorch.extension.pybindings import _C
    except ImportError:  # another wheel layout: the public wrapper (slow import, same API)
        from executorch.extension.pybindings import portable_lib as _C
    return _C


class LoadedPte:
    """A ``.pte`` program with its ``forward`` method loaded; keeps the program alive."""

    def __init__(self, path: Path, program: Any, method: Any) -> None:
        self.path = path
        self._program = program  # the method points into the program's memory
        self._method = method

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The fixed input shape (batch included) the program was exported with."""
        return tuple(self._method.method_meta().input_tensor_meta(0).sizes())

    @property
    def input_shapes(self) -> list[list[int]]:
        """Every input's fixed shape, for error messages."""
        meta = self._method.method_meta()
        return [list(meta.input_tensor_meta(i).sizes()) for i in range(meta.num_inputs())]

    def __call__(self, inputs: list[torch.Tensor]) -> list[Any]:
        """Execute ``forward``; outputs are copies (they do not alias the method's arenas)."""
        return self._method(inputs)


def registered_backends() -> list[str]:
    """Delegate backend ids this host's runtime has registered."""
    return list(bindings()._get_registered_backend_names())


def pte_runnable_on_host(backend: str) -> bool:
    """Whether this host's runtime has the backend's delegate registered."""
    if backend not in DELEGATE_IDS:
        raise ValueError(f"unknown .pte backend {backend!r}; expected one of {tuple(DELEGATE_IDS)}")
    return bool(bindings()._is_available(DELEGATE_IDS[backend]))


def pte_delegate_ids(path: str | Path) -> list[str]:
    """Delegate backend ids a ``.pte`` file needs (e.g. ``["XnnpackBackend"]``), read from it.

    Reads the flatbuffer with executorch's serializer, which imports the compiler: only
    called to explain a failed load.
    """
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(Path(path).read_bytes()).program
    return sorted({d.id for plan in program.execution_plan for d in plan.delegates})


def load_pte(path: str | Path) -> LoadedPte:
    """Load a ``.pte`` file's ``forward`` method, verifying the program's internal consistency.

    Call ``set_pte_threads`` before this: XNNPACK binds the current threadpool at load time.
    """
    check_executorch()
    lib = bindings()
    path = Path(path)
    program = lib._load_program(
        str(path), program_verification=lib.Verification.InternalConsistency
    )
    try:
        method = program.load_method("forward")
    except RuntimeError as err:  # the runtime only says "error: 0x:20"; say which backend
        registered = list(lib._get_registered_backend_names())
        missing = [b for b in pte_delegate_ids(path) if b not in registered]
        if missing:
            raise RuntimeError(
                f"{path}: needs delegate backend(s) {', '.join(missing)}, which this host's "
                f"executorch runtime does not have (registered: {', '.join(registered)}); run "
                "it on a device that does"
            ) from err
        raise
    loaded = LoadedPte(path, program, method)
    _LIVE.add(loaded)
    return loaded


def run_pte(loaded: LoadedPte, batch: torch.Tensor) -> torch.Tensor:
    """Run one input through a loaded program and return its first output.

    The program has the static shape of the export's example input, so ``batch`` must have
    exactly that shape, batch size included (typically ``[1, C, H, W]``); use ``evaluate_pte``
    for a whole split.
    """
    import torch

    expected = loaded.input_shape
    if tuple(batch.shape) != expected:
        raise ValueError(
            f"input shape {tuple(batch.shape)} does not match the program's fixed input shape "
            f"{expected} (the export's example input)"
        )
    return loaded([batch.detach().to(torch.float32).contiguous()])[0]


def evaluate_pte(
    path: str | Path, x: torch.Tensor, y: torch.Tensor, reference: torch.Tensor | None
) -> dict[str, Any]:
    """Accuracy of the ``.pte`` itself, run by the ExecuTorch runtime, over a whole split.

    Samples are fed in the program's batch size; a trailing partial batch is padded by
    repeating its last sample and the padding's outputs are dropped. ``max_abs_diff`` compares
    the outputs with ``reference`` (the fp32 reference logits for ``x``) when given.
    """
    import torch

    # The .ptl path's scoring: one definition of top-1.
    from mobileforge.runtime.evaluate import score

    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    if reference is not None and len(reference) != len(x):
        raise ValueError(f"reference has {len(reference)} rows but x has {len(x)} samples")
    loaded = load_pte(path)
    shape = loaded.input_shape
    if tuple(x.shape[1:]) != shape[1:]:
        raise ValueError(f"samples of shape {tuple(x.shape[1:])}, program expects {shape[1:]}")
    batch = shape[0]
    outputs = []
    x = x.to(torch.float32)
    for start in range(0, len(x), batch):
        part = x[start : start + batch]
        n = len(part)
        if n < batch:
            part = torch.cat([part, part[-1:].expand(batch - n, *part.shape[1:])])
        outputs.append(run_pte(loaded, part)[:n])
    if not outputs:
        return {"accuracy": 0.0, "max_abs_diff": None, "n": 0}
    return score(torch.cat(outputs).float(), y, reference)


def get_pte_threads() -> int:
    """Threads in executorch's shared threadpool (used by XNNPACK and optimized kernels)."""
    return int(bindings()._threadpool_get_thread_count())


def set_pte_threads(n: int) -> int:
    """Size executorch's threadpool to ``n`` threads; returns the count now in effect.

    The pip wheel's default is one thread per logical CPU (cpuinfo's count; CPU affinity
    does not change it). The only control is the experimental ``_unsafe_reset_threadpool``,
    which destroys and recreates the pool. XNNPACK binds the pool when a method is *loaded*, so
    this must be called before ``load_pte``; it refuses while programs returned by ``load_pte``
    are still alive (they would keep a dangling pool), and only changes threads for programs
    loaded afterwards.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"thread count must be a positive integer, got {n!r}")
    current = get_pte_threads()
    if n != current:
        alive = len(_LIVE)
        if alive:
            raise RuntimeError(
                f"cannot change executorch threads {current} -> {n} while {alive} loaded .pte "
                "program(s) are alive: XNNPACK binds the threadpool at load time; call "
                "set_pte_threads before load_pte"
            )
        bindings()._unsafe_reset_threadpool(n)
    applied = get_pte_threads()
    if applied != n:
        raise RuntimeError(f"asked executorch for {n} threads, its threadpool reports {applied}")
    return applied
