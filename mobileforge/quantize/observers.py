"""Activation observers: how calibration turns the ranges it saw into int8 scales.

``quantize.observer`` picks one for both formats, from each API's own classes (``torch.ao`` for
FX, ``torchao.quantization.pt2e`` for PT2E):

* ``histogram`` (default): a histogram of everything seen, then the range that minimises the
  L2 quantization error (PyTorch's ``HistogramObserver``: clips rare outliers);
* ``minmax``: the smallest and largest value seen (``MinMaxObserver``: never clips, so one
  outlier coarsens the scale of a whole tensor);
* ``percentile``: the same histogram, clipped at the ``quantize.percentile`` and
  ``100 - percentile`` percentiles of what was seen. Neither API ships one, so it is a subclass
  of each API's ``HistogramObserver`` that replaces only the range search.
"""

from __future__ import annotations

from typing import Any

import torch

OBSERVERS = ("histogram", "minmax", "percentile")


def _percentile_bounds(observer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The values at ``observer.percentile`` of the observed mass, from both ends."""
    histogram = observer.histogram.to(torch.float64)
    total = float(histogram.sum())
    if total <= 0:
        return observer.min_val, observer.max_val
    tail = total * (100.0 - observer.percentile) / 100.0
    cumulative = torch.cumsum(histogram, dim=0)
    bin_width = (observer.max_val - observer.min_val) / observer.bins
    # First bin whose cumulative mass passes the lower tail, last bin before the upper tail.
    low_bin = int(torch.searchsorted(cumulative, torch.tensor(tail, dtype=torch.float64)))
    high_bin = int(torch.searchsorted(cumulative, torch.tensor(total - tail, dtype=torch.float64)))
    low_bin = min(low_bin, observer.bins - 1)
    high_bin = max(min(high_bin, observer.bins - 1), low_bin)
    new_min = observer.min_val + bin_width * low_bin
    new_max = observer.min_val + bin_width * (high_bin + 1)
    return new_min, new_max


def _percentile_class(base: type) -> type:
    class PercentileObserver(base):  # type: ignore[misc, valid-type]
        """``HistogramObserver`` whose range is the ``percentile`` bounds of the histogram."""

        def __init__(self, *args: Any, percentile: float = 99.99, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if not 50.0 < percentile <= 100.0:
                raise ValueError(f"percentile must be in (50, 100], got {percentile}")
            self.percentile = float(percentile)

        def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
            return _percentile_bounds(self)

        def extra_repr(self) -> str:
            return f"{super().extra_repr()}, percentile={self.percentile}"

    PercentileObserver.__qualname__ = f"Percentile{base.__name__}"
    return PercentileObserver


_PERCENTILE_CLASSES: dict[type, type] = {}


def _observer_class(name: str, histogram: type, minmax: type) -> type:
    if name == "histogram":
        return histogram
    if name == "minmax":
        return minmax
    if name == "percentile":
        if histogram not in _PERCENTILE_CLASSES:
            _PERCENTILE_CLASSES[histogram] = _percentile_class(histogram)
        return _PERCENTILE_CLASSES[histogram]
    raise ValueError(f"quantize.observer {name!r} is not one of {', '.join(OBSERVERS)}")


def describe(name: str, percentile: float = 99.99) -> str:
    """How the sidecar names an activation observer choice."""
    if name == "percentile":
        return f"PercentileObserver ({percentile} percentile of a HistogramObserver histogram)"
    return {"histogram": "HistogramObserver", "minmax": "MinMaxObserver"}[name]


def _extra_args(name: str, percentile: float) -> dict[str, Any]:
    return {"percentile": percentile} if name == "percentile" else {}


def fx_activation_observer(name: str, percentile: float = 99.99, **kwargs: Any) -> Any:
    """A ``torch.ao`` observer constructor (``.with_args``) for FX ``QConfig`` activations."""
    from torch.ao.quantization.observer import HistogramObserver, MinMaxObserver

    cls = _observer_class(name, HistogramObserver, MinMaxObserver)
    return cls.with_args(**_extra_args(name, percentile), **kwargs)


def pt2e_activation_observer(name: str, percentile: float = 99.99, **kwargs: Any) -> Any:
    """A ``torchao`` observer constructor for PT2E ``QuantizationSpec`` activations."""
    from torchao.quantization.pt2e import HistogramObserver, MinMaxObserver

    cls = _observer_class(name, HistogramObserver, MinMaxObserver)
    return cls.with_args(**_extra_args(name, percentile), **kwargs)
