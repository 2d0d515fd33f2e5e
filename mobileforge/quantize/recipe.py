"""What one int8 calibration is made of, shared by the FX (``.ptl``) and PT2E (``.pte``) paths.

Torch-free: a recipe is plain values, recorded in stage files and sidecars and read back to
rebuild exactly the same quantized model (``fp32_layers`` included).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: ``quantize.reduce_range: auto``: the int8 job calibrates 8-bit and 7-bit and keeps the better.
AUTO = "auto"


@dataclass(frozen=True)
class Recipe:
    """Calibration choices plus the layers the accuracy budget kept in fp32."""

    per_channel: bool = True
    observer: str = "histogram"  # see mobileforge.quantize.observers
    percentile: float = 99.99  # used by observer "percentile" only
    reduce_range: bool = False  # 7-bit activations; honoured by the FX x86 engine only
    clamp_aware: bool = True  # see mobileforge.quantize.clamps
    calibration_batches: int = 8
    batch_size: int = 32
    fp32_layers: tuple[str, ...] = field(default=())
    # int8_dynamic (quantize.mode): linear layers quantize their activations at run time; set
    # by the variant, never by a config key.
    dynamic: bool = False

    @classmethod
    def from_settings(cls, settings: dict[str, Any], fp32_layers: tuple[str, ...] = ()) -> Recipe:
        """The recipe of a model's ``quantize`` config block (unknown keys are ignored)."""
        keys = ("per_channel", "observer", "percentile", "reduce_range", "clamp_aware")
        keys += ("calibration_batches", "batch_size")
        chosen = {key: settings[key] for key in keys if key in settings}
        if chosen.get("reduce_range") == AUTO:
            # Decided by measurement in the int8 job (stages.quantize); the simulated ranking of
            # the sensitivity job cannot see kernel overflow either way, so it uses 8 bits.
            chosen["reduce_range"] = False
        return cls(**chosen, fp32_layers=tuple(fp32_layers))

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Recipe:
        return cls(**{**record, "fp32_layers": tuple(record.get("fp32_layers", ()))})

    def with_fp32_layers(self, layers: tuple[str, ...] | list[str]) -> Recipe:
        return Recipe(**{**asdict(self), "fp32_layers": tuple(layers)})

    def made_dynamic(self) -> Recipe:
        return Recipe(**{**asdict(self), "dynamic": True})

    @property
    def calibration_samples(self) -> int:
        return self.calibration_batches * self.batch_size

    def as_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["fp32_layers"] = list(self.fp32_layers)
        if not self.dynamic:  # static recipes record what they recorded before the flag existed
            del record["dynamic"]
        return record
