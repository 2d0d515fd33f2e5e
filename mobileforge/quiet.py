"""Silence the deprecation banners torch.ao.quantization prints on every call.

FX graph-mode quantization is deprecated upstream (in favour of pt2e) but it is what produces
TorchScript-scriptable int8 models for the lite interpreter; its multi-line banner would
otherwise fill every job log.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_quantization_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"Please use quant_min and quant_max")
        warnings.filterwarnings("ignore", message=r"must run observer before calling")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao")
        yield
