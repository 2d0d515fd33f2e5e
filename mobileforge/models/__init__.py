"""Model zoo and the one place that turns an ``arch`` string into an ``nn.Module``.

An ``arch`` is either a zoo name (``tinycnn``, ``mobilenet_v2``, ``resnet18``, ``resnet34``,
``vit``) or an
import path ``package.module:callable`` naming a user builder. Either way the builder is called as
``builder(num_classes=..., **kwargs)`` and must return an ``nn.Module``.

This module must stay importable without torch: Snakemake imports it while building a DAG of
possibly hundreds of models (to validate ``arch`` strings), and importing torch costs ~1.6 s per
process. Torch is imported lazily inside :func:`build_model` only.
"""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

__all__ = ["ZOO", "build_model", "is_import_path", "resolve_arch"]

#: Zoo name -> ``"module:callable"``. Plain strings so that listing the zoo imports nothing.
ZOO: dict[str, str] = {
    "tinycnn": "mobileforge.models.tinycnn:tinycnn",
    "mobilenet_v2": "mobileforge.models.mobilenetv2:mobilenet_v2",
    "resnet18": "mobileforge.models.resnet:resnet18",
    "resnet34": "mobileforge.models.resnet:resnet34",
    "vit": "mobileforge.models.vit:vit",
}

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# ``pkg.mod:callable``; the attribute part may be dotted (``pkg.mod:Class.factory``).
_IMPORT_PATH_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$")


def is_import_path(arch: str) -> bool:
    """Return True if ``arch`` has the ``package.module:callable`` form (syntax only, no import)."""
    return isinstance(arch, str) and _IMPORT_PATH_RE.match(arch) is not None


def resolve_arch(arch: str) -> str:
    """Map a zoo name to its import path; return an import path unchanged.

    Done without importing anything so a config with a typo fails before any job starts.
    """
    if isinstance(arch, str):
        if arch in ZOO:
            return ZOO[arch]
        if is_import_path(arch):
            return arch
    names = ", ".join(ZOO)
    raise ValueError(f"unknown arch {arch!r}: expected one of {names} or 'package.module:callable'")


def _import_callable(arch: str, path: str) -> Any:
    module_name, _, attr_path = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"arch {arch!r}: cannot import module {module_name!r}: {exc}. "
            "Check the spelling and that the package is installed or on PYTHONPATH."
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ValueError(
                f"arch {arch!r}: module {module_name!r} has no attribute {attr_path!r}"
            ) from exc
    if not callable(obj):
        raise ValueError(
            f"arch {arch!r}: {path!r} is a {type(obj).__name__}, not a callable model builder"
        )
    return obj


def build_model(
    arch: str,
    num_classes: int,
    kwargs: dict[str, Any] | None = None,
    seed: int | None = None,
) -> torch.nn.Module:
    """Build ``arch`` with ``num_classes`` outputs and return it in ``eval()`` mode.

    Args:
        arch: zoo name or ``package.module:callable``.
        num_classes: passed to the builder as ``num_classes=``.
        kwargs: extra keyword arguments for the builder (e.g. ``{"width_mult": 0.5}``).
        seed: if given, weights are initialised from this seed inside a forked RNG so that the
            same (arch, kwargs, seed) always yields the same initial weights and the caller's
            global RNG state is left untouched.

    Raises:
        ValueError: naming ``arch`` when the module cannot be imported, the attribute is missing
            or not callable, the builder rejects the arguments, or it does not return a Module.
    """
    import torch

    path = resolve_arch(arch)
    builder = _import_callable(arch, path)
    kwargs = dict(kwargs or {})
    if "num_classes" in kwargs:
        raise ValueError(f"arch {arch!r}: pass num_classes separately, not inside kwargs")
    try:
        if seed is None:
            model = builder(num_classes=num_classes, **kwargs)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = builder(num_classes=num_classes, **kwargs)
    except TypeError as exc:
        raise ValueError(
            f"arch {arch!r}: builder {path!r} rejected arguments "
            f"num_classes={num_classes!r}, kwargs={kwargs!r}: {exc}"
        ) from exc
    if not isinstance(model, torch.nn.Module):
        raise ValueError(
            f"arch {arch!r}: builder {path!r} returned {type(model).__name__}, "
            "expected a torch.nn.Module"
        )
    return model.eval()
