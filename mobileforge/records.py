"""The records that cross a file or process boundary, declared once.

A stage writes JSON that another job reads: an artifact's sidecar, the meta a stage file carries,
a benchmark's result, a row of the summary. Each has one shape here, as a ``TypedDict``:
producers build it, consumers read it, and :func:`check` holds a record to its shape where it
crosses over. A key renamed on one side then fails loudly on the other (naming the key, the
record and the file) instead of leaving a column quietly empty.

``schemas/records/<name>.schema.json`` is each shape as JSON Schema, written by
``python -m mobileforge.records schemas/records``; a test fails when a shape changes and that
file was not rewritten, so a change of shape is a visible diff.

Torch-free and cheap to import: the summary and benchmark jobs, which import no torch, use it.
No ``from __future__ import annotations`` here: with it, Python 3.11 cannot tell a
``NotRequired`` key from a required one.
"""

import functools
import json
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict, Union

from mobileforge import files

#: Where a record's shape is declared, for error messages.
HOME = "mobileforge/records.py"


class RecordError(ValueError):
    """A record that does not have its declared shape."""


# -- an artifact's sidecar (results/<model>/<fmt>/<variant>.<backend>.<fmt>.json) ------------


class Toolchain(TypedDict):
    """What made an output: the code fingerprint and package versions (mobileforge.fingerprint)."""

    code: str
    packages: dict[str, str]


class Int8BudgetSummary(TypedDict):
    met: bool
    reason: str
    loss: float


class PruneBudgetSummary(TypedDict):
    met: bool
    reason: str


class ArtifactSidecar(TypedDict):
    """The sidecar of a deployable artifact (``.ptl`` or ``.pte``): what it is, what it was
    made from and with, and how it was built. Keys of one format only are marked."""

    artifact: str  # its path, as the workflow names it
    sha256: str
    size_bytes: int
    compressed_bytes: int  # zlib level 9: what a download costs
    model: str
    format: Literal["ptl", "pte"]
    variant: str  # fp32, int8, int8_dynamic, int8_pruned-<method>-<amount>
    backend: str
    engine: str | None  # the int8 kernel library of a .ptl (x86, qnnpack); None for .pte
    arch: str
    params: int
    macs: int | None
    input_shape: list[int]
    sparsity: float | None
    fp32_layers: list[str] | None  # layers the int8 budget kept in fp32; None: not int8
    int8_budget: Int8BudgetSummary | None
    # int8 only: the recipe (static: calibrated activation ranges; dynamic: int8_dynamic) and the
    # linear layers that quantize their activations at run time (empty for static)
    quantize_mode: NotRequired[Literal["static", "dynamic"]]
    dynamic_layers: NotRequired[list[str]]
    prune: dict[str, Any] | None  # the pruning applied: method, amount, ...
    prune_budget: PruneBudgetSummary | None
    optimization: str  # how the artifact was optimized (freeze, lowering)
    torch_version: str
    python_version: str
    toolchain: Toolchain | None
    # .ptl only (mobileforge.export.ptl)
    scripting: NotRequired[str]
    optimize_for_mobile_unavailable: NotRequired[str]
    candidates: NotRequired[dict[str, Any]]
    choice: NotRequired[str]
    choice_reason: NotRequired[str]
    # .pte only (mobileforge.export.pte)
    executorch_version: NotRequired[str]
    lowering: NotRequired[dict[str, Any]]
    delegated_subgraphs: NotRequired[int]
    delegate_backend_ids: NotRequired[list[str]]
    delegated_nodes: NotRequired[int]
    portable_nodes: NotRequired[int]
    delegated_ops: NotRequired[dict[str, int]]
    portable_ops: NotRequired[dict[str, int]]
    # .pte int8 only: the converted program it was lowered from and how that was calibrated
    quantizer: NotRequired[dict[str, Any]]
    calibration_samples: NotRequired[int]
    int8_program: NotRequired[dict[str, Any]]


# -- the meta a stage file (.pt) carries ---------------------------------------------------


class StageMeta(TypedDict):
    """What a stage file (checkpoint, fused, int8, pruned) says about its model, enough to
    rebuild it from architecture and state_dict (mobileforge.chain). Later stages add keys."""

    stage: Literal["checkpoint", "fused", "int8", "int8_pruned", "pruned"]
    model: str
    arch: str
    kwargs: dict[str, Any]
    num_classes: int
    input_shape: list[int]
    params: int
    source: str  # trained, imported from <path>, or initial weights
    macs: NotRequired[int]  # from fused on
    variant: NotRequired[str]  # int8 stages
    engine: NotRequired[str]
    recipe: NotRequired[dict[str, Any]]
    dynamic_layers: NotRequired[list[str]]  # int8_dynamic: linear layers quantized at run time
    int8_budget: NotRequired[Int8BudgetSummary]
    prune: NotRequired[dict[str, Any]]  # l1 int8 pruning: method, amount, requested_amount
    prune_budget: NotRequired[PruneBudgetSummary]
    sparsity: NotRequired[float]
    # channel pruning: method, amount, scope, round_to, steps, finetune_epochs, stopped
    pruned: NotRequired[dict[str, Any]]
    pruned_structure: NotRequired[dict[str, Any]]


# -- a channel point's pruning record (results/<model>/pruned-<point>.pt.json, key "prune") ---


class ChannelCost(TypedDict):
    macs: int
    params: int


class PruneStep(TypedDict):
    """One step of a gradual channel pruning (``prune.steps``)."""

    step: int  # from 1
    amount: float  # share of each layer's initial channels removed once this step is done
    macs: int
    params: int  # with BatchNorm, before fusion


class RecoveryEpoch(TypedDict):
    """One fine-tune epoch of a channel point: after pruning step ``step``, ``epoch`` of it."""

    epoch: int  # from 1, within its step
    step: int
    loss: float
    train_acc: float  # top-1 % on the batches as trained (flipped, in train mode)
    holdout_acc: float | None  # top-1 % on the held-back part of the train split; None: none
    seconds: float


class Recovery(TypedDict):
    """How a channel point's fine-tune recovered: its curve and why it stopped."""

    holdout_images: int
    reference_holdout_acc: float | None  # the unpruned model's top-1 on the held-back part
    accuracy_budget: float  # selection.accuracy_budget
    int8_margin: float  # prune.finetune.int8_margin: the part of the budget left for int8
    target_acc: float | None  # reference - (budget - margin); None without a held-back part
    ceiling: int  # prune.finetune.epochs
    stopped: Literal["within_budget", "patience", "ceiling"]
    best_epoch: int | None  # the last step's epoch whose weights the model kept
    epochs_used: int  # of the last step
    seconds: float  # pruning and every fine-tune, all steps
    history: list[RecoveryEpoch]  # every step's epochs, in order


class ChannelPruneRecord(TypedDict):
    """What a channel point's stage sidecar says of its pruning (key ``prune``)."""

    method: Literal["channel"]
    amount: float
    scope: str
    round_to: int | None
    importance: str
    kept_layers: list[str]
    before: ChannelCost  # params of the fused models
    after: ChannelCost
    steps: list[PruneStep]
    finetune: dict[str, Any]  # prune.finetune as configured
    recovery: Recovery


# -- a benchmark's result (results/<model>/bench/<fmt>/<stem>.<device>.json) ---------------


class Latency(TypedDict):
    """Latency of one artifact in milliseconds (mobileforge.bench.stats): over every timed
    iteration of a run, combined over runs as the median of each statistic."""

    count: int
    mean: float
    std: float
    min: float
    max: float
    p50: float
    p90: float
    p99: float
    trimmed_mean: float
    runs: int
    cv: float | None  # run-to-run coefficient of variation of p50; None for one run
    p50_runs: list[float]


class BenchmarkResult(TypedDict):
    """What a benchmark job writes: one artifact on one device, ``repeats`` runs. Keys only the
    host (mobileforge.bench.host) or only a phone (mobileforge.bench.android) has are marked."""

    artifact: str
    artifact_bytes: int
    device: str  # the config's device name
    device_kind: Literal["host", "adb"]
    format: Literal["ptl", "pte"]
    runtime: str
    input_shape: list[int]
    input: str
    warmup: int
    iterations: int
    repeats: int
    cooldown: dict[str, Any]
    threads_requested: int
    threads_applied: int | None
    thread_control: str
    affinity: list[int] | None
    load_ms: float | None
    first_inference_ms: float | None
    latency_ms: Latency
    rss_before_load_mb: float | None
    peak_rss_mb: float | None
    torch_version: str | None
    executorch_version: str | None
    python_version: str | None
    thermal: dict[str, Any]
    timing: dict[str, float | int | None]
    warnings: list[str]
    null_reasons: dict[str, str]  # why a field is None
    runs: list[dict[str, Any]]  # each process's own result; each has ``samples_ms``
    toolchain: Toolchain | None
    # host only
    host: NotRequired[dict[str, Any]]
    process: NotRequired[str]
    quantized_engine: NotRequired[str | None]
    torch_threads: NotRequired[int | None]
    torch_interop_threads: NotRequired[int | None]
    cooldown_s: NotRequired[float]
    # phone only
    device_info: NotRequired[dict[str, Any]]
    adb_server: NotRequired[str]
    runner: NotRequired[str]
    runner_sha256: NotRequired[str]
    remote_command: NotRequired[str]
    pushed: NotRequired[Any]
    retries_used: NotRequired[Any]


# -- an artifact's accuracy (results/<model>/eval/<fmt>/<stem>.json) -------------------------


class Evaluation(TypedDict):
    """An artifact's accuracy on the eval split, run by its own runtime, and how far its logits
    are from the fp32 model's."""

    artifact: str
    accuracy: float  # top-1, percent
    max_abs_diff: float | None  # largest |logit - fp32 reference logit|
    n: int  # eval images
    torch_version: str
    python_version: str
    toolchain: Toolchain | None


# -- a host's peak throughput (results/peak/<device>.json) ----------------------------------


class PeakThroughput(TypedDict):
    """The best dense throughput of this host per precision, at a device's threads: the
    ceiling of the summary's roofline fractions (mobileforge.bench.peak)."""

    device: str
    threads: int
    affinity: list[int] | None
    engine: str
    gemm: dict[str, int]  # m, k, n, macs
    repeats: int
    warmup: int
    kernels: list[dict[str, Any]]  # every kernel timed: kernel, precision, gmacs, ...
    peak: dict[str, dict[str, Any]]  # precision -> {kernel, gmacs} of the best kernel
    host: dict[str, Any]
    cpu_features: list[str]
    torch_version: str
    executorch_version: str | None


# -- where an artifact's time goes (results/<model>/profile/<fmt>/<stem>.<device>.json) -----


class ProfiledLayer(TypedDict):
    """One operator or delegated block of a profiled artifact, over the profile's runs."""

    name: str  # the runtime's event name (operator, or the delegate's block)
    kind: Literal["compute", "quantize", "dequantize", "layout", "delegate", "other"]
    module: str | None  # the model's module it came from, where debug handles map back
    calls: int  # events of this name per run
    median_ms: float  # median over runs of this layer's time per run
    share: float  # median_ms / the profile's per-run total of every layer
    macs: int | None  # multiply-accumulates of its module, where known
    gmacs_per_s: float | None  # macs / median_ms


class Profile(TypedDict):
    """Where one artifact's time goes on one device: per layer, checked against its benchmark.
    A device that cannot be profiled still gets a record: ``layers`` empty, ``unavailable``
    saying why."""

    artifact: str
    model: str
    format: Literal["ptl", "pte"]
    variant: str
    device: str
    device_kind: Literal["host", "adb"]
    method: str  # etdump (ExecuTorch Inspector) | lite_profiler (torch.profiler, lite interpreter)
    unavailable: str | None  # why there is no profile; None when there is one
    runs: int  # profiled inferences (after warmup)
    warmup: int
    threads: int | None
    layers: list[ProfiledLayer]  # by median_ms, largest first
    layers_ms: float | None  # sum of every layer's median_ms (what share is of)
    end_to_end_ms: float | None  # median per-run time of the whole inference, same process
    outside_ms: float | None  # end_to_end_ms - layers_ms: time outside operators
    # the profiler's own cost per run: end_to_end_ms - the median unprofiled run in the same
    # process (None where the profiler cannot be switched off: ETDump)
    profiler_overhead_ms: float | None
    benchmark_p50_ms: float | None  # the benchmark record's p50 on this device
    coverage: float | None  # layers_ms / benchmark_p50_ms
    agrees: bool | None  # coverage within 20 % of 1, or the difference named (outside_ms)
    agreement: str  # one sentence: how the per-layer sum compares to the benchmark
    warnings: list[str]
    torch_version: str | None
    executorch_version: str | None
    toolchain: Toolchain | None


# -- a prune search (results/<model>/prune_search/channel-<amount>.json, prune_search.json) ---


class SearchedArtifact(TypedDict):
    """One int8 artifact of a tried amount against its fp32 artifact (mobileforge.budget)."""

    artifact: str
    format: str
    backend: str
    engine: str | None
    accuracy: float | None  # top-1, percent
    fp32_accuracy: float | None  # top-1 of the fp32 artifact of the same format and backend
    accuracy_delta: float | None  # points against it
    within_budget: bool


class SearchTried(TypedDict):
    """An amount tried before, with its verdict."""

    amount: float
    within_budget: bool


class PruneSearchStep(TypedDict):
    """The verdict on one amount a prune search tried (the prune_search_step checkpoint): within
    the budget when every int8 artifact of the point is, in every format and backend."""

    model: str
    point: str  # channel-<amount>
    amount: float
    within_budget: bool
    accuracy_budget: float
    artifacts: list[SearchedArtifact]
    tried_before: list[SearchTried]  # in the order tried
    # the untried amounts still possible after this verdict, [lowest, highest]; None: none left
    interval: list[float] | None
    toolchain: Toolchain | None


class PruneSearch(TypedDict):
    """Where a model's prune search ended: every amount tried, in order, and the answer."""

    model: str
    method: str
    low: float
    high: float
    step: float
    max_points: int
    accuracy_budget: float
    steps: list[PruneSearchStep]
    chosen: str | None  # the point of the largest amount within the budget; None: none was
    chosen_amount: float | None
    stopped: str  # why the search tried no further amount
    toolchain: Toolchain | None


# -- a row of results/summary.csv ------------------------------------------------------------


class SummaryRow(TypedDict):
    """One artifact on one device, as results/summary.csv has it (columns in this order).
    The columns are described in the README (Reading the results)."""

    model: str
    variant: str
    format: str
    backend: str
    device: str
    engine: str
    params: int | None
    size_bytes: int
    compressed_bytes: int | None
    prune_method: str | None
    prune_amount: float | None
    finetune_epochs: int | None  # channel points: fine-tune epochs after the last pruning step
    sparsity: float | None
    fp32_layers: int | None
    fp32_layer_names: str | None
    accuracy: float | None
    accuracy_delta: float | None
    max_abs_diff: float | None
    latency_ms_p50: float | None
    latency_ms_p90: float | None
    latency_ms_mean: float | None
    latency_ms_std: float | None
    latency_ms_min: float | None
    latency_ms_trimmed_mean: float | None
    latency_ms_ci_low: float | None
    latency_ms_ci_high: float | None
    latency_cv: float | None
    repeats: int | None
    unstable: bool
    load_ms: float | None
    peak_rss_mb: float | None
    threads: int | None
    affinity: str | None
    node: str | None
    cpu_model: str | None
    temp_c_before: float | None
    temp_c_after: float | None
    speedup: float | None
    speedup_low: float | None
    speedup_high: float | None
    vs_executorch: float | None
    vs_executorch_low: float | None
    vs_executorch_high: float | None
    compared: bool | None
    macs: int | None
    achieved_gmacs: float | None
    peak_gmacs: float | None
    peak_kernel: str
    roofline_fraction: float | None
    pareto: bool
    best: bool
    best_reason: str
    optimization: str
    runtime: str
    built_with: str
    note: str
    artifact: str


#: Every declared record by the name of its schema file.
SHAPES: dict[str, type] = {
    "artifact-sidecar": ArtifactSidecar,
    "stage-meta": StageMeta,
    "benchmark-result": BenchmarkResult,
    "evaluation": Evaluation,
    "peak-throughput": PeakThroughput,
    "summary-row": SummaryRow,
    "profile": Profile,
    "prune-search-step": PruneSearchStep,
    "prune-search": PruneSearch,
    "channel-prune": ChannelPruneRecord,
}


def keys(shape: type) -> list[str]:
    """The keys of ``shape``, in declaration order."""
    return list(_hints(shape))


@functools.cache
def _hints(shape: type) -> dict[str, Any]:
    # Once per shape: get_type_hints costs about 0.3 ms, and a summary reads a record per
    # artifact and device.
    return typing.get_type_hints(shape)


@functools.cache
def _nested(shape: type) -> tuple[tuple[str, type, bool], ...]:
    """The keys of ``shape`` that hold a declared record of their own (or a list of them), with
    its shape and whether it is a list."""
    found = []
    for key, hint in _hints(shape).items():
        if (nested := _record_type(hint)) is not None:
            found.append((key, nested, False))
        elif (items := _list_item_type(hint)) is not None:
            found.append((key, items, True))
    return tuple(found)


def check(shape: type, record: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """``record`` if it has ``shape``'s keys (its required ones, and no others), nested
    declared records too; else :class:`RecordError` naming the keys, the shape and ``where``
    (the file or job the record belongs to)."""
    if not isinstance(record, Mapping):
        raise RecordError(f"{where}: a {shape.__name__} must be a JSON object, not {record!r}")
    missing = sorted(shape.__required_keys__ - record.keys())  # type: ignore[attr-defined]
    unknown = sorted(record.keys() - _hints(shape).keys())
    if missing or unknown:
        parts = [f"lacks {missing}"] * bool(missing) + [f"has undeclared {unknown}"] * bool(unknown)
        raise RecordError(
            f"{where}: not a {shape.__name__} ({HOME}): it {' and '.join(parts)}; a key renamed "
            "on one side must be renamed in its declaration and by its readers too"
        )
    for key, nested, many in _nested(shape):
        value = record.get(key)
        if value is None:
            continue
        if not many:
            check(nested, value, f"{where}, key {key!r}")
            continue
        if not isinstance(value, list):
            raise RecordError(f"{where}, key {key!r}: a list of {nested.__name__} expected")
        for index, item in enumerate(value):
            check(nested, item, f"{where}, key {key!r}[{index}]")
    return record


def read(shape: type, path: str | Path) -> dict[str, Any]:
    """The JSON record at ``path``, held to ``shape`` (:func:`check`)."""
    record = files.read_json(path)
    check(shape, record, str(path))
    return record


def _record_type(hint: Any) -> type | None:
    """The TypedDict a hint names (alone or ``| None``), else None."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    found = [option for option in options if typing.is_typeddict(option)]
    return found[0] if found else None


def _list_item_type(hint: Any) -> type | None:
    """The TypedDict a ``list[...]`` hint holds, else None."""
    if typing.get_origin(hint) is not list:
        return None
    (item,) = typing.get_args(hint) or (None,)
    return item if item is not None and typing.is_typeddict(item) else None


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def json_schema(shape: type) -> dict[str, Any]:
    """``shape`` as a JSON Schema (draft 2020-12)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": shape.__name__,
        "description": " ".join((shape.__doc__ or "").split()),
        **_object_schema(shape),
    }


def _object_schema(shape: type) -> dict[str, Any]:
    hints = _hints(shape)
    return {
        "type": "object",
        "properties": {key: _schema(hint) for key, hint in hints.items()},
        "required": [key for key in hints if key in shape.__required_keys__],  # type: ignore[attr-defined]
        "additionalProperties": False,
    }


_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


def _schema(hint: Any) -> dict[str, Any]:
    if hint is Any:
        return {}
    if typing.is_typeddict(hint):
        return {"title": hint.__name__, **_object_schema(hint)}
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if _is_union(hint):
        return {"anyOf": [_schema(arg) for arg in args]}
    if origin is Literal:
        return {"enum": list(args)}
    if origin is list:
        return {"type": "array", "items": _schema(args[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema(args[1])}
    raise TypeError(f"{HOME}: no JSON Schema for {hint!r}")


def schema_texts() -> dict[str, str]:
    """Each shape's schema file name and text."""
    return {
        f"{name}.schema.json": json.dumps(json_schema(shape), indent=2) + "\n"
        for name, shape in SHAPES.items()
    }


def write_schemas(directory: str | Path) -> list[Path]:
    """Write every shape's JSON Schema into ``directory``; the paths written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in schema_texts().items():
        (directory / name).write_text(text)
        written.append(directory / name)
    return written


if __name__ == "__main__":  # python -m mobileforge.records schemas/records
    for path in write_schemas(sys.argv[1] if len(sys.argv) > 1 else "schemas/records"):
        print(path)
