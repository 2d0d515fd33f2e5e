"""Which artifacts, evaluations and benchmarks a resolved config asks for, and their paths
(built from the templates of :mod:`mobileforge.layout`, where the layout of results/ is drawn).

Torch-free: the Snakefile calls this while building the DAG.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mobileforge import layout, records
from mobileforge.config import RUNNABLE_BACKENDS
from mobileforge.layout import DYNAMIC, DYNAMIC_BACKENDS, INT8_BACKENDS, PRECISIONS, PRUNE_METHODS
from mobileforge.prune.search import SEARCH, Search
from mobileforge.prune.search import history_before as search_history_before
from mobileforge.prune.search import tried as search_tried

#: Methods that prune the fp32 model before calibration (their own int8, sensitivity and
#: recipe); the others prune the int8 weights of the ``int8`` variant.
PRUNE_BEFORE_INT8 = ("channel",)


@dataclass(frozen=True)
class PrunePoint:
    """One pruning recipe of a model: a method and an amount (a sweep has several)."""

    method: str
    amount: float

    @property
    def label(self) -> str:
        return f"{self.method}-{self.amount:g}"

    @property
    def variant(self) -> str:
        """The variant name of its int8 artifacts, e.g. ``int8_pruned-channel-0.5``."""
        return f"int8_pruned-{self.label}"

    @property
    def before_int8(self) -> bool:
        return self.method in PRUNE_BEFORE_INT8


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def prune_points(settings: dict[str, Any]) -> list[PrunePoint]:
    """Every (method, amount) of a model's ``prune`` block: lists make a sweep (their product).
    Not for ``amount: search``, whose points come from its verdicts (:func:`model_prune_points`)."""
    if settings["amount"] == SEARCH:
        raise ValueError("prune.amount search: its points are known one by one (plan.searched)")
    points = {
        PrunePoint(method, float(amount))
        for method in _as_list(settings["method"])
        for amount in _as_list(settings["amount"])
    }
    return sorted(points, key=lambda p: (PRUNE_METHODS.index(p.method), p.amount))


def prune_point(config: dict[str, Any], model: str, variant: str) -> PrunePoint:
    """The prune point a pruned variant name stands for (KeyError if the model has none). For
    ``amount: search``, any channel amount the search may try: a grid point between its
    bounds, whether or not its verdicts lead there."""
    if searches(config, model):
        amount = _searched_amount(variant)
        search = search_of(config, model)
        if amount is None or not search.contains(amount):
            raise KeyError(
                f"{model} has no prune point named {variant!r}: models.{model}.prune.search "
                f"tries int8_pruned-channel-<amount> with amount a multiple of {search.step:g} "
                f"from {search.low:g} to {search.high:g}"
            )
        return PrunePoint("channel", search.amount(round(amount / search.step)))
    for point in prune_points(config["models"][model]["prune"]):
        if point.variant == variant:
            return point
    raise KeyError(f"{model} has no prune point named {variant!r}")


def _searched_amount(variant: str) -> float | None:
    prefix = "int8_pruned-channel-"
    if not variant.startswith(prefix):
        return None
    try:
        return float(variant.removeprefix(prefix))
    except ValueError:
        return None


# prune.amount search: which amounts a model tries is known verdict by verdict. The workflow
# reads each verdict through the prune_search_step checkpoint (rules/common.smk); before any is
# known, every function here plans the first amount only (:func:`unsearched`).
#: (model, amount) -> whether that amount's int8 artifacts are within the budget, None while
#: unknown.
SearchVerdict = Callable[[str, float], bool | None]


def unsearched(model: str, amount: float) -> bool | None:
    """No verdict yet: a search plans its first amount only."""
    return None


def searches(config: dict[str, Any], model: str) -> bool:
    """Whether ``model`` searches its channel amount (``prune.amount: search``)."""
    return config["models"][model]["prune"]["amount"] == SEARCH


def search_of(config: dict[str, Any], model: str) -> Search:
    """``model``'s ``prune.search`` settings (ValueError if it searches no amount)."""
    if not searches(config, model):
        raise ValueError(f"models.{model}.prune.amount is not search: {model} searches nothing")
    return Search.of(config["models"][model]["prune"]["search"])


def model_prune_points(
    config: dict[str, Any], model: str, verdict: SearchVerdict = unsearched
) -> list[PrunePoint]:
    """``model``'s prune points: the configured ones, or the amounts its search tries as far as
    ``verdict`` knows them (the one to build next included)."""
    if not searches(config, model):
        return prune_points(config["models"][model]["prune"])
    amounts = search_tried(search_of(config, model), lambda amount: verdict(model, amount))
    return [PrunePoint("channel", amount) for amount in amounts]


def search_step_path(model: str, point: PrunePoint) -> str:
    """The verdict of one amount a search tried (the ``prune_search_step`` checkpoint)."""
    return layout.fill(layout.PRUNE_SEARCH_STEP, model=model, point=point.label)


def search_path(model: str) -> str:
    """Where ``model``'s search ended: every amount tried and the one chosen."""
    return layout.fill(layout.PRUNE_SEARCH, model=model)


def search_paths(config: dict[str, Any]) -> list[str]:
    """The outcome of every model's search (the summary shows them), when pruned variants are
    built."""
    if "int8_pruned" not in config["variants"]:
        return []
    return [search_path(model) for model in config["models"] if searches(config, model)]


def search_steps(config: dict[str, Any], model: str, verdict: SearchVerdict) -> list[str]:
    """The verdict record of every amount ``model``'s search tries, as far as known."""
    search_of(config, model)  # a model that searches nothing has none
    return [search_step_path(model, p) for p in model_prune_points(config, model, verdict)]


def search_history(
    config: dict[str, Any], model: str, point: PrunePoint, verdict: SearchVerdict
) -> list[tuple[float, bool]]:
    """The amounts ``model``'s search tried before ``point`` and their verdicts (ValueError,
    naming the key, when the search does not try it)."""
    search = search_of(config, model)
    try:
        return search_history_before(search, point.amount, lambda amount: verdict(model, amount))
    except ValueError as error:
        raise ValueError(f"models.{model}.prune.search: {error}") from None


def search_step_inputs(
    config: dict[str, Any], model: str, point: PrunePoint, verdict: SearchVerdict
) -> dict[str, list[str]]:
    """What the verdict of ``point`` reads: its int8 artifacts and fp32 ones (each format and
    backend with int8, evaluated here) with their evaluations, and the verdict before it."""
    int8 = [a for a in _artifacts_of(config, model, [point.variant]) if evaluable_here(a)]
    pairs = {(a.fmt, a.backend) for a in int8}
    fp32 = [a for a in _artifacts_of(config, model, ["fp32"]) if (a.fmt, a.backend) in pairs]
    history = search_history(config, model, point, verdict)
    previous = [PrunePoint("channel", history[-1][0])] if history else []
    return {
        "artifacts": [a.path for a in int8],
        "evaluations": [a.eval_path for a in int8],
        "references": [a.path for a in fp32],
        "reference_evaluations": [a.eval_path for a in fp32],
        "previous": [search_step_path(model, p) for p in previous],
    }


def read_search_verdict(path: str | os.PathLike[str]) -> bool:
    """Whether the verdict record at ``path`` found its amount within the budget."""
    return bool(records.read(records.PruneSearchStep, path)["within_budget"])


def verdicts_on_disk(config: dict[str, Any]) -> SearchVerdict:
    """The search verdicts already on disk (none yet: the first amount only); for code that runs
    after the jobs (the partial summary of a failed run)."""

    def verdict(model: str, amount: float) -> bool | None:
        path = search_step_path(model, PrunePoint("channel", amount))
        return read_search_verdict(path) if os.path.isfile(path) else None

    return verdict


#: Whether a model in ``quantize.mode: auto`` builds ``int8_dynamic``: its MAC split decides
#: (:func:`dynamic_pays`), read from its fused stage. The workflow reads it through the fuse
#: checkpoint (rules/common.smk), so that the DAG waits for the model to be fused; before that,
#: every function here plans the static variants only (:func:`undecided`).
AutoDecision = Callable[[str], bool]


def undecided(model: str) -> bool:
    """The decision before the fused stage exists: no ``int8_dynamic`` (yet)."""
    return False


def quant_mode(config: dict[str, Any], model: str) -> str:
    """``quantize.mode`` of ``model``: static, dynamic or auto (:data:`layout.QUANT_MODES`)."""
    return config["models"][model]["quantize"]["mode"]


def linear_share(macs_by_kind: Mapping[str, int]) -> float:
    """The share of a model's MACs in linear layers and matrix products (0 with no MACs)."""
    total = sum(macs_by_kind.values())
    return macs_by_kind.get("linear", 0) / total if total else 0.0


def dynamic_pays(config: dict[str, Any], model: str, macs_by_kind: Mapping[str, int]) -> bool:
    """Whether ``auto`` builds ``int8_dynamic`` for a model of this MAC split: linear layers and
    matrix products hold at least ``quantize.dynamic_min_share`` of its MACs (a CNN whose only
    linear layer is its classifier holds well under 1 %)."""
    threshold = config["models"][model]["quantize"]["dynamic_min_share"]
    return linear_share(macs_by_kind) >= threshold


def auto_decides(config: dict[str, Any], model: str) -> bool:
    """Whether ``model``'s variants wait for its MAC split: ``auto`` with ``int8`` configured."""
    return "int8" in config["variants"] and quant_mode(config, model) == "auto"


def read_macs_by_kind(sidecar: str | os.PathLike[str]) -> dict[str, int]:
    """The MAC split a fused stage's sidecar records (``macs_by_kind``)."""
    with open(sidecar, encoding="utf-8") as handle:
        return json.load(handle)["macs_by_kind"]


def decided_on_disk(config: dict[str, Any]) -> AutoDecision:
    """The auto decision from the fused stages already on disk (none yet: no int8_dynamic);
    for code that runs after the jobs (the partial summary of a failed run)."""

    def decide(model: str) -> bool:
        sidecar = layout.sidecar(layout.fill(layout.FUSED, model=model))
        if not os.path.isfile(sidecar):
            return False
        return dynamic_pays(config, model, read_macs_by_kind(sidecar))

    return decide


def int8_variants(
    config: dict[str, Any],
    model: str,
    auto: AutoDecision = undecided,
    verdict: SearchVerdict = unsearched,
) -> list[str]:
    """The int8 variants of ``model``: its unpruned ones by ``quantize.mode`` (static:
    ``int8``; dynamic: ``int8_dynamic``; auto: ``int8``, and ``int8_dynamic`` where ``auto``
    says so), then one per prune point, as configured (a search: as far as ``verdict``
    knows)."""
    variants = []
    if "int8" in config["variants"]:
        mode = quant_mode(config, model)
        variants += ["int8"] if mode != "dynamic" else []
        if mode == "dynamic" or (mode == "auto" and auto(model)):
            variants.append(DYNAMIC)
    if "int8_pruned" in config["variants"]:
        variants += [point.variant for point in model_prune_points(config, model, verdict)]
    return variants


def calibrated_variants(
    config: dict[str, Any], model: str, verdict: SearchVerdict = unsearched
) -> list[str]:
    """Statically calibrated int8 variants with a calibration of their own: ``int8`` and
    prune-before-int8 points.

    Points that prune int8 weights reuse the ``int8`` calibration, which is then needed even
    when ``int8`` itself is not built (not configured, or ``quantize.mode: dynamic``).
    """
    pruned = "int8_pruned" in config["variants"]
    # (a search without pruned variants tries nothing: its verdicts are never asked for)
    points = model_prune_points(config, model, verdict) if pruned else []
    own = [p.variant for p in points if pruned and p.before_int8]
    static = "int8" in config["variants"] and quant_mode(config, model) != "dynamic"
    needs_int8 = static or (pruned and not all(p.before_int8 for p in points))
    return (["int8"] if needs_int8 else []) + own


def ranking_of(qvariant: str) -> str:
    """The calibrated variant whose sensitivity ranking a calibration's budget falls back by:
    its own, and ``int8``'s for ``int8_dynamic`` (the same fused model; the layers static int8
    damages most are those kept in fp32 first)."""
    return "int8" if qvariant == DYNAMIC else qvariant


def fused_path(model: str, qvariant: str) -> str:
    """The fp32 stage a calibrated variant quantizes: ``fused.pt`` or its pruned model."""
    if qvariant in ("int8", DYNAMIC):
        return layout.fill(layout.FUSED, model=model)
    label = qvariant.removeprefix("int8_pruned-")
    return layout.fill(layout.PRUNED, model=model, point=label)


def calibration_of(config: dict[str, Any], model: str, variant: str) -> str | None:
    """The calibrated variant whose int8 calibration ``variant`` is built from: its own for
    ``int8``, ``int8_dynamic`` and points pruned before int8 (channel), ``int8``'s for points
    that prune the int8 weights (l1_unstructured); None for fp32."""
    if variant == "fp32":
        return None
    if variant in ("int8", DYNAMIC) or prune_point(config, model, variant).before_int8:
        return variant
    return "int8"


def int8_inputs(
    config: dict[str, Any], model: str, qvariant: str, fmt: str, key: str
) -> dict[str, str]:
    """What an int8 calibration of ``qvariant`` for ``key`` (FX engine or .pte backend) reads:
    its fp32 stage, the dataset and, with an accuracy budget, the layers' sensitivity ranking
    (:func:`ranking_of`). Without a budget nothing is kept in fp32, so int8 does not wait for
    the ranking."""
    inputs = {"fused": fused_path(model, qvariant), "data": dataset_path(config, model)}
    if config["models"][model]["quantize"]["accuracy_budget"] is not None:
        inputs["sensitivity"] = sensitivity_path(model, ranking_of(qvariant), fmt, key)
    return inputs


def pte_export_inputs(
    config: dict[str, Any], model: str, variant: str, backend: str
) -> dict[str, str]:
    """What export_pte lowers for ``variant``: the fused model (fp32), or the converted program
    quantize_pte saved with its recipe and fp32 stage; a point that prunes int8 weights also
    reads the dataset, for its pruning budget on the calibration split."""
    qvariant = calibration_of(config, model, variant)
    if qvariant is None:
        return {"fused": fused_path(model, "int8")}
    inputs = {
        "fused": fused_path(model, qvariant),
        "recipe": pte_recipe_path(model, qvariant, backend),
        "program": pte_program_path(model, qvariant, backend),
    }
    if qvariant != variant:
        inputs["data"] = dataset_path(config, model)
    return inputs


#: The device setting holding a phone's runner of each format.
RUNNER_KEYS = {"ptl": "runner", "pte": "pte_runner"}


def runner_of(device: dict[str, Any], fmt: str) -> str:
    """The device-side runner binary a phone runs ``fmt`` artifacts with."""
    return device[RUNNER_KEYS[fmt]]


@dataclass(frozen=True)
class Artifact:
    model: str
    fmt: str  # "ptl" | "pte"
    variant: str  # "fp32" | "int8" | "int8_pruned-<method>-<amount>"
    backend: str
    engine: str | None  # the int8 kernel library of a .ptl int8 artifact, else None

    @property
    def stem(self) -> str:
        parts = [self.variant] + ([self.engine] if self.engine else []) + [self.backend]
        return ".".join(parts)

    @property
    def path(self) -> str:
        return layout.fill(layout.ARTIFACT, model=self.model, fmt=self.fmt, stem=self.stem)

    @property
    def eval_path(self) -> str:
        return layout.fill(layout.EVALUATION, model=self.model, fmt=self.fmt, stem=self.stem)

    def bench_path(self, device: str) -> str:
        return layout.fill(
            layout.BENCHMARK, model=self.model, fmt=self.fmt, stem=self.stem, device=device
        )

    def profile_path(self, device: str) -> str:
        return layout.fill(
            layout.PROFILE, model=self.model, fmt=self.fmt, stem=self.stem, device=device
        )


def host_devices(config: dict[str, Any]) -> list[str]:
    """Devices that are this machine: each gets a peak throughput measurement (roofline)."""
    return [name for name, device in config["devices"].items() if device["kind"] == "host"]


def peak_path(device: str) -> str:
    return layout.fill(layout.PEAK, device=device)


def peak_program_path(precision: str) -> str:
    return layout.fill(layout.PEAK_PROGRAM, precision=precision)


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
            return layout.fill(layout.SIZES_FIGURE, model=self.model)
        if self.model is None:
            return layout.fill(layout.DEVICE_FIGURE, device=self.device, kind=self.kind)
        return layout.fill(
            layout.DEVICE_MODEL_FIGURE, device=self.device, model=self.model, kind=self.kind
        )


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
    return layout.fill(layout.DATASET, dataset=name, chw=f"{channels}x{height}x{width}")


def sensitivity_path(model: str, qvariant: str, fmt: str, key: str) -> str:
    """Per-layer int8 sensitivity of one calibrated variant for one quantizer (FX engine or
    .pte backend)."""
    return layout.fill(layout.SENSITIVITY, model=model, qvariant=qvariant, fmt=fmt, key=key)


def pte_recipe_path(model: str, qvariant: str, backend: str) -> str:
    return layout.fill(layout.PTE_RECIPE, model=model, qvariant=qvariant, backend=backend)


def pte_program_path(model: str, qvariant: str, backend: str) -> str:
    """The converted PT2E program the recipe chose (``torch.export.save``), before lowering."""
    return layout.fill(layout.PTE_PROGRAM, model=model, qvariant=qvariant, backend=backend)


def _calibrations(
    config: dict[str, Any], model: str, verdict: SearchVerdict = unsearched
) -> list[tuple[str, str, str]]:
    """(calibrated variant, format, FX engine or .pte backend) of every int8 calibration."""
    own = calibrated_variants(config, model, verdict)
    found = set()
    for fmt in config["formats"]:
        for backend in config["backends"][fmt]:
            if backend not in INT8_BACKENDS[fmt]:
                continue
            keys = engines_needed(config) if fmt == "ptl" else [backend]
            found |= {(qvariant, fmt, key) for qvariant in own for key in keys}
    return sorted(found)


def sensitivities(
    config: dict[str, Any], model: str, verdict: SearchVerdict = unsearched
) -> list[str]:
    """The sensitivity files of ``model``: one per calibration of its int8 artifacts, and
    ``int8``'s where ``quantize.mode: dynamic`` ranks by it without building ``int8``."""
    calibrations = _calibrations(config, model, verdict)
    found = {sensitivity_path(model, *calibration) for calibration in calibrations}
    settings = config["models"][model]["quantize"]
    if DYNAMIC in int8_variants(config, model) and settings["accuracy_budget"] is not None:
        found |= {
            sensitivity_path(model, "int8", fmt, key) for fmt, key in _dynamic_quantizers(config)
        }
    return sorted(found)


def _dynamic_quantizers(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(format, FX engine or .pte backend) of every ``int8_dynamic`` calibration."""
    found = []
    for fmt in config["formats"]:
        for backend in config["backends"][fmt]:
            if backend in DYNAMIC_BACKENDS[fmt]:
                keys = engines_needed(config) if fmt == "ptl" else [backend]
                found += [(fmt, key) for key in keys]
    return sorted(set(found))


def int8_decisions(
    config: dict[str, Any], model: str, verdict: SearchVerdict = unsearched
) -> list[str]:
    """Where each of ``model``'s int8 calibrations records its fp32 layers and budget steps."""
    return [
        layout.sidecar(layout.fill(layout.INT8, model=model, variant=qvariant, engine=key))
        if fmt == "ptl"
        else pte_recipe_path(model, qvariant, key)
        for qvariant, fmt, key in _calibrations(config, model, verdict)
    ]


def channel_points(
    config: dict[str, Any], model: str, verdict: SearchVerdict = unsearched
) -> list[str]:
    """The channel points ``model`` builds (``channel-<amount>``: what a pruned stage is named
    by), from its int8 variants (a search's: as far as ``verdict`` knows)."""
    prefix = "int8_pruned-"
    return [
        variant.removeprefix(prefix)
        for variant in int8_variants(config, model, verdict=verdict)
        if variant.startswith(prefix) and prune_point(config, model, variant).before_int8
    ]


def recovery_sidecars(
    config: dict[str, Any], model: str, verdict: SearchVerdict = unsearched
) -> list[str]:
    """The sidecars of ``model``'s channel-pruned stages: each holds its recovery curve (a
    search's points: as far as ``verdict`` knows)."""
    return [
        layout.sidecar(layout.fill(layout.PRUNED, model=model, point=point))
        for point in channel_points(config, model, verdict)
    ]


def recovery_figures(config: dict[str, Any]) -> dict[str, str]:
    """The recovery figure of each model with channel points (model -> path)."""
    return {
        model: layout.fill(layout.RECOVERY_FIGURE, model=model)
        for model in config["models"]
        if channel_points(config, model)
    }


def sensitivity_plots(config: dict[str, Any]) -> list[str]:
    return [
        layout.fill(layout.SENSITIVITY_PLOT, model=model)
        for model in config["models"]
        if sensitivities(config, model)
    ]


def engines_needed(config: dict[str, Any]) -> list[str]:
    """int8 engines to calibrate: only those the configured devices run."""
    return sorted({device["engine"] for device in config["devices"].values()})


def artifacts(
    config: dict[str, Any],
    model: str,
    auto: AutoDecision = undecided,
    verdict: SearchVerdict = unsearched,
) -> list[Artifact]:
    """Every artifact built for ``model``; only combinations that can exist."""
    variants = ["fp32"] if "fp32" in config["variants"] else []
    variants += int8_variants(config, model, auto, verdict)
    return _artifacts_of(config, model, variants)


def _artifacts_of(config: dict[str, Any], model: str, variants: list[str]) -> list[Artifact]:
    """The artifacts of ``variants`` of ``model``, in every format and backend that has them."""
    found: list[Artifact] = []
    for fmt in config["formats"]:
        for backend in config["backends"][fmt]:
            for variant in variants:
                if variant != "fp32" and backend not in INT8_BACKENDS[fmt]:
                    continue
                if variant == DYNAMIC and backend not in DYNAMIC_BACKENDS[fmt]:
                    continue
                if fmt == "ptl" and variant != "fp32":
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


def all_artifacts(
    config: dict[str, Any], auto: AutoDecision = undecided, verdict: SearchVerdict = unsearched
) -> list[Artifact]:
    return [a for model in config["models"] for a in artifacts(config, model, auto, verdict)]


def auto_artifacts(
    config: dict[str, Any],
    model: str,
    auto: AutoDecision,
    verdict: SearchVerdict = unsearched,
) -> list[Artifact]:
    """The artifacts of ``model`` that exist only by ``auto``'s decision, or by its search's
    verdicts past the first amount (none where the mode is not auto and no amount is searched):
    what a job listing artifacts lists apart, so that the static ones are planned before the
    model is fused or searched."""
    if not (auto_decides(config, model) or searches(config, model)):
        return []
    static = set(artifacts(config, model))
    return [a for a in artifacts(config, model, auto, verdict) if a not in static]


def benchmarks(
    config: dict[str, Any], auto: AutoDecision = undecided, verdict: SearchVerdict = unsearched
) -> list[tuple[Artifact, str]]:
    return [
        (artifact, device)
        for artifact in all_artifacts(config, auto, verdict)
        for device in config["devices"]
        if device_runs(config, device, artifact)
    ]


def profiles(config: dict[str, Any]) -> list[str]:
    """The per-layer profile of every benchmark (artifact x device), when ``profile.enabled``."""
    return [path for model in config["models"] for path in profile_paths(config, model)]


def compare_path(model: str, device: str) -> str:
    return layout.fill(layout.COMPARISON, model=model, device=device)


def compared_artifacts(
    config: dict[str, Any], model: str, device: str, auto: AutoDecision = undecided
) -> list[Artifact]:
    """The artifacts of ``model`` a comparison on ``device`` chooses its candidates from."""
    return [a for a in artifacts(config, model, auto) if device_runs(config, device, a)]


def comparisons(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(model, device) of every paired comparison: each device that runs an artifact of it.
    Decided before any model is fused: the ``int8_dynamic`` that ``auto`` adds runs only where
    that model's ``int8`` does."""
    return [
        (model, device)
        for model in config["models"]
        for device in config["devices"]
        if compared_artifacts(config, model, device)
    ]


def float_model_path(config: dict[str, Any], model: str, fmt: str, stem: str) -> str:
    """The fp32 stage the artifact ``<stem>.<fmt>`` of ``model`` was built from (fused, or the
    pruned model of a channel point): its profile counts each module's MACs on it."""
    # every artifact the config can build, ``auto``'s int8_dynamic included
    for artifact in artifacts(config, model, lambda _: True):
        if artifact.fmt == fmt and artifact.stem == stem:
            return fused_path(model, calibration_of(config, model, artifact.variant) or "int8")
    # an amount a search may try is listed only once the verdicts lead there: its name says it
    variant = stem.rsplit(".", 1)[0]  # <variant>[.<engine>].<backend>, the amount has a dot
    for engine in layout.ENGINES:
        variant = variant.removesuffix(f".{engine}")
    if searches(config, model) and _searched_amount(variant) is not None:
        return fused_path(model, prune_point(config, model, variant).variant)
    raise KeyError(f"{model} has no {fmt} artifact {stem!r} in the config")


def profile_paths(config: dict[str, Any], model: str) -> list[str]:
    """The per-layer profiles of ``model``: one per artifact and device that runs it (as
    :func:`benchmarks`); a device that cannot profile still writes one, saying why."""
    if not config["profile"]["enabled"]:
        return []
    # Per model, not a filter of every benchmark: the DAG asks this once per model.
    return [
        artifact.profile_path(device)
        for artifact in artifacts(config, model)
        for device in config["devices"]
        if device_runs(config, device, artifact)
    ]


def profile_page_paths(model: str) -> dict[str, str]:
    """The report page of ``model``'s profiles: Markdown and its HTML twin."""
    return {
        "markdown": layout.fill(layout.PROFILE_PAGE, model=model),
        "html": layout.fill(layout.PROFILE_PAGE_HTML, model=model),
    }


def profile_pages(config: dict[str, Any]) -> list[str]:
    """Every model's profile page (both forms) that has a profile to show."""
    return [
        path
        for model in config["models"]
        if profile_paths(config, model)
        for path in profile_page_paths(model).values()
    ]
