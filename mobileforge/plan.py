"""Which artifacts, evaluations and benchmarks a resolved config asks for, and their paths.

Torch-free: the Snakefile calls this while building the DAG. All path conventions live here so
the rules, the summary and the tests agree on one layout:

    results/data/<dataset>-<H>x<W>.pt
    results/<model>/checkpoint.pt | fused.pt | int8.<engine>.pt | int8_pruned.<engine>.pt
    results/<model>/reference.pt                       fp32 logits on the eval split
    results/<model>/sensitivity/<ptl.<engine>|pte.<backend>>.json   int8 damage per layer
    results/<model>/pte/int8.<backend>.recipe.json     the .pte int8 calibration + fp32 layers
    results/<model>/ptl/fp32.<backend>.ptl
    results/<model>/ptl/<int8|int8_pruned>.<engine>.cpu.ptl
    results/<model>/pte/<variant>.<backend>.pte
    results/<model>/eval/<format>/<stem>.json          accuracy of the artifact itself
    results/<model>/bench/<format>/<stem>.<device>.json
    results/peak/gemm.<precision>.xnnpack.pte          GEMM programs of the peak measurement
    results/peak/<device>.json                         peak dense throughput of a host device
    results/summary.csv | summary.md                   everything joined; best per model x device
    results/report/summary.html                        both tables, for the HTML report
    results/report/<device>/latency_accuracy.png       one panel per model
    results/report/<device>/<model>/latency_distribution.png | load_memory.png
    results/report/sizes/<model>.png
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mobileforge.config import RUNNABLE_BACKENDS

RESULTS = "results"
#: Precisions the peak throughput is measured in (an artifact's follows from its variant).
PRECISIONS = ("fp32", "int8")
INT8_VARIANTS = ("int8", "int8_pruned")
# int8 .ptl exists only for CPU kernels; ExecuTorch lowers int8 (pt2e) to each of its backends.
INT8_BACKENDS = {"ptl": ("cpu",), "pte": ("xnnpack", "vulkan", "coreml")}


@dataclass(frozen=True)
class Artifact:
    model: str
    fmt: str  # "ptl" | "pte"
    variant: str  # "fp32" | "int8" | "int8_pruned"
    backend: str
    engine: str | None  # the int8 kernel library of a .ptl int8 artifact, else None

    @property
    def stem(self) -> str:
        parts = [self.variant] + ([self.engine] if self.engine else []) + [self.backend]
        return ".".join(parts)

    @property
    def path(self) -> str:
        return f"{RESULTS}/{self.model}/{self.fmt}/{self.stem}.{self.fmt}"

    @property
    def eval_path(self) -> str:
        return f"{RESULTS}/{self.model}/eval/{self.fmt}/{self.stem}.json"

    def bench_path(self, device: str) -> str:
        return f"{RESULTS}/{self.model}/bench/{self.fmt}/{self.stem}.{device}.json"


def host_devices(config: dict[str, Any]) -> list[str]:
    """Devices that are this machine: each gets a peak throughput measurement (roofline)."""
    return [name for name, device in config["devices"].items() if device["kind"] == "host"]


def peak_path(device: str) -> str:
    return f"{RESULTS}/peak/{device}.json"


def peak_program_path(precision: str) -> str:
    return f"{RESULTS}/peak/gemm.{precision}.xnnpack.pte"


def peak_program_paths(config: dict[str, Any]) -> dict[str, str]:
    """ExecuTorch GEMM programs the peak measurement times; none when .pte is not built."""
    if "pte" not in config["formats"]:
        return {}
    return {precision: peak_program_path(precision) for precision in PRECISIONS}


@dataclass(frozen=True)
class Figure:
    """One plot of the report: what it shows (``kind``) for which device and model."""

    kind: str  # "latency_accuracy" | "latency_distribution" | "load_memory" | "sizes"
    device: str | None
    model: str | None

    @property
    def path(self) -> str:
        if self.kind == "sizes":
            return f"{RESULTS}/report/sizes/{self.model}.png"
        if self.model is None:
            return f"{RESULTS}/report/{self.device}/{self.kind}.png"
        return f"{RESULTS}/report/{self.device}/{self.model}/{self.kind}.png"


#: Figures drawn per device (one panel per model), per device and model, and per model.
DEVICE_FIGURES = ("latency_accuracy",)
DEVICE_MODEL_FIGURES = ("latency_distribution", "load_memory")
MODEL_FIGURES = ("sizes",)


def figures(config: dict[str, Any]) -> list[Figure]:
    """Every plot of the report, in a stable order."""
    found = [Figure(kind, device, None) for device in config["devices"] for kind in DEVICE_FIGURES]
    found += [
        Figure(kind, device, model)
        for device in config["devices"]
        for model in config["models"]
        for kind in DEVICE_MODEL_FIGURES
    ]
    found += [Figure(kind, None, model) for model in config["models"] for kind in MODEL_FIGURES]
    return found


def dataset_path(config: dict[str, Any], model: str) -> str:
    _, channels, height, width = config["models"][model]["input_shape"]
    name = config["dataset"]["name"]
    return f"{RESULTS}/data/{name}-{channels}x{height}x{width}.pt"


def sensitivity_path(model: str, fmt: str, key: str) -> str:
    """Per-layer int8 sensitivity of ``model`` for one quantizer: FX engine or .pte backend."""
    return f"{RESULTS}/{model}/sensitivity/{fmt}.{key}.json"


def pte_recipe_path(model: str, backend: str) -> str:
    return f"{RESULTS}/{model}/pte/int8.{backend}.recipe.json"


def sensitivities(config: dict[str, Any], model: str) -> list[str]:
    """The sensitivity files of ``model``: one per quantizer its int8 artifacts are built with."""
    keys = {
        (artifact.fmt, artifact.engine or artifact.backend)
        for artifact in artifacts(config, model)
        if artifact.variant in INT8_VARIANTS
    }
    return [sensitivity_path(model, fmt, key) for fmt, key in sorted(keys)]


def int8_decisions(config: dict[str, Any], model: str) -> list[str]:
    """Where each of ``model``'s int8 calibrations records its fp32 layers and budget steps."""
    paths = set()
    for artifact in artifacts(config, model):
        if artifact.variant not in INT8_VARIANTS:
            continue
        if artifact.fmt == "ptl":
            paths.add(f"{RESULTS}/{model}/int8.{artifact.engine}.pt.json")
        else:
            paths.add(pte_recipe_path(model, artifact.backend))
    return sorted(paths)


def sensitivity_plots(config: dict[str, Any]) -> list[str]:
    return [
        f"{RESULTS}/report/sensitivity/{model}.png"
        for model in config["models"]
        if sensitivities(config, model)
    ]


def engines_needed(config: dict[str, Any]) -> list[str]:
    """int8 engines to calibrate: only those the configured devices run."""
    return sorted({device["engine"] for device in config["devices"].values()})


def artifacts(config: dict[str, Any], model: str) -> list[Artifact]:
    """Every artifact built for ``model``; only combinations that can exist."""
    found: list[Artifact] = []
    variants = config["variants"]
    for fmt in config["formats"]:
        for backend in config["backends"][fmt]:
            for variant in variants:
                if variant in INT8_VARIANTS and backend not in INT8_BACKENDS[fmt]:
                    continue
                if fmt == "ptl" and variant in INT8_VARIANTS:
                    for engine in engines_needed(config):
                        found.append(Artifact(model, fmt, variant, backend, engine))
                else:
                    found.append(Artifact(model, fmt, variant, backend, None))
    return found


def device_runs(config: dict[str, Any], device: str, artifact: Artifact) -> bool:
    """Whether ``device`` executes ``artifact`` (kind supports the backend, engine matches)."""
    settings = config["devices"][device]
    if artifact.backend not in RUNNABLE_BACKENDS[settings["kind"]][artifact.fmt]:
        return False
    if settings["kind"] == "adb" and artifact.fmt == "pte" and "pte_runner" not in settings:
        return False
    return artifact.engine is None or artifact.engine == settings["engine"]


def evaluable_here(artifact: Artifact) -> bool:
    """Whether this machine can run ``artifact`` to measure its accuracy (the host runtimes)."""
    return artifact.backend in RUNNABLE_BACKENDS["host"][artifact.fmt]


def all_artifacts(config: dict[str, Any]) -> list[Artifact]:
    return [artifact for model in config["models"] for artifact in artifacts(config, model)]


def benchmarks(config: dict[str, Any]) -> list[tuple[Artifact, str]]:
    return [
        (artifact, device)
        for artifact in all_artifacts(config)
        for device in config["devices"]
        if device_runs(config, device, artifact)
    ]
