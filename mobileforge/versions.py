"""The torch/executorch pairing this project is tested with, checked without importing either.

executorch ships compiled runtime and custom ops built against one torch ABI, so a mismatch
fails late and obscurely (missing symbols, wrong op schemas). The workflow checks the installed
distributions' metadata while it builds the DAG (cheap: no import), and the .pte jobs check the
imported modules again (:func:`check_executorch`).
"""

from __future__ import annotations

from importlib import metadata

# torch release -> the executorch release pinned for it.
EXECUTORCH_FOR_TORCH: dict[str, str] = {
    "2.13.0": "1.5.1",
}


def base_version(version: str) -> str:
    """Drop the local tag (``2.13.0+cpu`` -> ``2.13.0``): the wheel flavour does not matter."""
    return version.split("+", 1)[0]


def _installed(distribution: str) -> str | None:
    try:
        return base_version(metadata.version(distribution))
    except metadata.PackageNotFoundError:
        return None


def executorch_mismatch(torch_version: str | None, executorch_version: str | None) -> str | None:
    """One line saying what is wrong with this pair and how to fix it, or None if it is pinned."""
    torch_version = torch_version and base_version(torch_version)
    executorch_version = executorch_version and base_version(executorch_version)
    required = EXECUTORCH_FOR_TORCH.get(torch_version or "")
    if required is not None and executorch_version == required:
        return None
    found = f"found torch {torch_version} and " + (
        f"executorch {executorch_version}" if executorch_version else "no executorch"
    )
    if required is None:
        supported = ", ".join(
            f"torch {t} + executorch {e}" for t, e in EXECUTORCH_FOR_TORCH.items()
        )
        torch_pin, et_pin = next(iter(EXECUTORCH_FOR_TORCH.items()))
        return (
            f"{found}, but no executorch release is pinned for torch {torch_version} "
            f"(supported: {supported}); fix: pip install torch=={torch_pin} executorch=={et_pin}"
        )
    return (
        f"{found}, but torch {torch_version} requires executorch {required}; fix: "
        f"pip install executorch=={required}"
    )


def installed_executorch_mismatch() -> str | None:
    """:func:`executorch_mismatch` for the installed distributions (metadata only)."""
    return executorch_mismatch(_installed("torch"), _installed("executorch"))


def check_executorch() -> str:
    """Fail early, in one line, if executorch is missing or not the release pinned for torch.

    Checks the imported modules (the workflow already checked the installed metadata while
    building the DAG); returns the executorch version without its local tag.
    """
    import torch

    try:
        from executorch.version import __version__ as executorch_version
    except ImportError:
        executorch_version = None
    problem = executorch_mismatch(torch.__version__, executorch_version)
    if problem:
        raise RuntimeError(problem)
    return base_version(executorch_version)
