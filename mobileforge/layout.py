"""Where every file of a run lives, and the names those paths are made of: once, for the rules
and for Python alike.

The templates are Snakemake patterns (``{model}``, ``{engine}`` ...), so a rule names its output
with one of them as it is, or with its wildcards renamed (:func:`fill`), and Python builds a
concrete path with :func:`fill` too. The names that fill them (formats, backends, engines,
variants) are declared here as well, with the patterns their wildcards must match; a test checks
them against ``schemas/config.schema.yaml``.

Torch-free and cheap: the Snakefile reads it while it builds the DAG.

Under ``results/``::

    data/<dataset>-<C>x<H>x<W>.pt                      the train/calib/eval splits
    <model>/checkpoint.pt | fused.pt                   trained (or imported) and fused fp32
    <model>/reference.pt                               fp32 logits on the eval split
    <model>/pruned-channel-<amount>.pt                 channel-pruned, fine-tuned fp32, fused
    <model>/<int8 variant>.<engine>.pt                 FX int8 (and its l1-pruned points)
    <model>/sensitivity/<qvariant>.<ptl.<engine>|pte.<backend>>.json   per-layer int8 damage
    <model>/pte/<qvariant>.<backend>.recipe.json       .pte int8 calibration + fp32 layers
    <model>/pte/<qvariant>.<backend>.pt2               its converted program, not yet lowered
    <model>/ptl/fp32.<backend>.ptl
    <model>/ptl/<int8 variant>.<engine>.cpu.ptl
    <model>/pte/<variant>.<backend>.pte
    <model>/eval/<format>/<stem>.json                  accuracy of the artifact itself
    <model>/bench/<format>/<stem>.<device>.json        its benchmark on one device
    <model>/profile/<format>/<stem>.<device>.json      where its time goes, layer by layer
    <model>/compare/<device>.json                      paired comparison: best and every ratio
    <model>/prune_search/channel-<amount>.json         prune search: one tried amount's verdict
    <model>/prune_search.json                          prune search: every amount tried, the answer
    peak/gemm.<precision>.xnnpack.pte                  GEMM programs of the peak measurement
    peak/<device>.json                                 peak dense throughput of a host device
    summary.csv | summary.md                           everything joined; best per model x device
    report/summary.html                                both tables, for the HTML report
    report/<device>/latency_accuracy.png               one panel per model
    report/<device>/<model>/latency_distribution.png | load_memory.png
    report/sizes/<model>.png
    report/sensitivity/<model>.png
    report/profile/<model>.md | <model>.html           top layers of every artifact, side by side

Every file has a sidecar beside it (``<file>.json``: :func:`sidecar`) where it is an artifact.
Each job's log is ``logs/<stage>/<key>.log`` and Snakemake's record of its run time and memory
``benchmarks/<stage>/<key>.tsv`` (:func:`log`, :func:`runtime`).
"""

from __future__ import annotations

import functools
import re

RESULTS = "results"

# -- the names paths are made of ---------------------------------------------------------------

#: Where a dataset comes from (``dataset.name``).
DATASETS = ("shapes", "folder", "tensors")
FORMATS = ("ptl", "pte")
#: Backends each format is built for (``backends.<fmt>`` in the config).
BACKENDS = {"ptl": ("cpu", "vulkan", "metal"), "pte": ("xnnpack", "vulkan", "coreml")}
#: Backends that have int8 artifacts: int8 .ptl exists only for CPU kernels; ExecuTorch lowers
#: int8 (pt2e) to each of its backends.
INT8_BACKENDS = {"ptl": ("cpu",), "pte": ("xnnpack", "vulkan", "coreml")}
#: int8 kernel libraries of a .ptl artifact (``devices.<name>.engine``).
ENGINES = ("x86", "qnnpack")
#: Variant families (``variants`` in the config); a prune point's variant is
#: ``int8_pruned-<method>-<amount>``. The ``int8`` family has two recipes (``quantize.mode``):
#: ``int8`` (static: calibrated activation ranges) and ``int8_dynamic`` (int8 weights, linear
#: layers quantize their activations at run time).
VARIANTS = ("fp32", "int8", "int8_pruned")
#: int8 recipes (``quantize.mode``; ``auto``: static, and dynamic too where linear layers hold a
#: real share of the MACs) and the variant each builds unpruned.
QUANT_MODES = ("static", "dynamic", "auto")
DYNAMIC = "int8_dynamic"
#: Backends with an ``int8_dynamic`` recipe: CPU kernels only (the lite interpreter's dynamic
#: linear, XNNPACK's dynamically quantized linear).
DYNAMIC_BACKENDS = {"ptl": ("cpu",), "pte": ("xnnpack",)}
PRUNE_METHODS = ("l1_unstructured", "channel")
#: Precisions the peak throughput is measured in (an artifact's follows from its variant).
PRECISIONS = ("fp32", "int8")

#: A prune amount as a prune point writes it (``{amount:g}``).
AMOUNT = r"[0-9.]+(e-[0-9]+)?"
#: What each variant wildcard matches. variant: any artifact variant; ivariant: any int8 one;
#: qvariant: those calibrated from an fp32 stage (int8, channel-pruned points); uvariant: those
#: pruned in int8 (l1_unstructured points); point: a channel-pruned fp32 model.
PATTERNS = {
    "engine": "|".join(ENGINES),
    "variant": rf"fp32|int8|int8_dynamic|int8_pruned-[a-z0-9_]+-{AMOUNT}",
    "ivariant": rf"int8|int8_dynamic|int8_pruned-[a-z0-9_]+-{AMOUNT}",
    "qvariant": rf"int8|int8_dynamic|int8_pruned-channel-{AMOUNT}",
    "uvariant": rf"int8_pruned-l1_unstructured-{AMOUNT}",
    "point": rf"channel-{AMOUNT}",
    "fmt": "|".join(FORMATS),
}

# -- path templates ----------------------------------------------------------------------------

DATASET = "results/data/{dataset}-{chw}.pt"
CHECKPOINT = "results/{model}/checkpoint.pt"
FUSED = "results/{model}/fused.pt"
REFERENCE = "results/{model}/reference.pt"
#: A channel-pruned, fine-tuned and fused fp32 model (``point``: ``channel-<amount>``).
PRUNED = "results/{model}/pruned-{point}.pt"
#: An FX int8 model of one engine: ``int8`` or a prune point's.
INT8 = "results/{model}/{variant}.{engine}.pt"
SENSITIVITY = "results/{model}/sensitivity/{qvariant}.{fmt}.{key}.json"
PTE_RECIPE = "results/{model}/pte/{qvariant}.{backend}.recipe.json"
PTE_PROGRAM = "results/{model}/pte/{qvariant}.{backend}.pt2"
PTL_FP32 = "results/{model}/ptl/fp32.{backend}.ptl"
PTL_INT8 = "results/{model}/ptl/{variant}.{engine}.{backend}.ptl"
PTE = "results/{model}/pte/{variant}.{backend}.pte"
#: Any artifact, by its stem (``<variant>[.<engine>].<backend>``).
ARTIFACT = "results/{model}/{fmt}/{stem}.{fmt}"
EVALUATION = "results/{model}/eval/{fmt}/{stem}.json"
BENCHMARK = "results/{model}/bench/{fmt}/{stem}.{device}.json"
PROFILE = "results/{model}/profile/{fmt}/{stem}.{device}.json"
COMPARISON = "results/{model}/compare/{device}.json"
#: The verdict of one amount a prune search tried (``point``: ``channel-<amount>``).
PRUNE_SEARCH_STEP = "results/{model}/prune_search/{point}.json"
#: Where a model's prune search ended: every amount tried, the one chosen and why it stopped.
PRUNE_SEARCH = "results/{model}/prune_search.json"
PEAK = "results/peak/{device}.json"
PEAK_PROGRAM = "results/peak/gemm.{precision}.xnnpack.pte"
SUMMARY = "results/summary.csv"
SUMMARY_MARKDOWN = "results/summary.md"
SUMMARY_HTML = "results/report/summary.html"
SENSITIVITY_PLOT = "results/report/sensitivity/{model}.png"
#: The recovery curve of every channel point of a model (held-back top-1 per fine-tune epoch).
RECOVERY_FIGURE = "results/report/recovery/{model}.png"
PROFILE_PAGE = "results/report/profile/{model}.md"
PROFILE_PAGE_HTML = "results/report/profile/{model}.html"
DEVICE_FIGURE = "results/report/{device}/{kind}.png"
DEVICE_MODEL_FIGURE = "results/report/{device}/{model}/{kind}.png"
SIZES_FIGURE = "results/report/sizes/{model}.png"

_FIELD = re.compile(r"\{(\w+)\}")


@functools.cache
def _fields(template: str) -> frozenset[str]:
    return frozenset(_FIELD.findall(template))


class _Wildcards(dict):
    """The names ``fill`` was given; any other field stays a wildcard for Snakemake."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(template: str, **names: str) -> str:
    """``template`` with the given wildcards replaced, the others left for Snakemake:
    ``fill(INT8, variant="{qvariant}")`` is a rule's pattern, ``fill(FUSED, model="m")`` a path.
    Raises ``KeyError`` for a name the template does not have."""
    fields = _fields(template)
    if not names.keys() <= fields:
        unknown = sorted(names.keys() - fields)
        raise KeyError(f"{template} has no wildcard {unknown}; it has {sorted(fields)}")
    # format_map, not a regex substitution per call: the plan fills paths for every artifact
    # and device while the DAG is built.
    return template.format_map(_Wildcards(names))


def one_of(names: tuple[str, ...] | list[str]) -> str:
    """A wildcard pattern matching exactly ``names``."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


def sidecar(path: str) -> str:
    """The JSON sidecar beside an artifact or stage file (``files.sidecar_path``)."""
    return f"{path}.json"


def log(stage: str, key: str) -> str:
    """A job's log: ``logs/<stage>/<key>.log`` (``key`` joins the job's wildcards)."""
    return f"logs/{stage}/{key}.log"


def runtime(stage: str, key: str) -> str:
    """Snakemake's ``benchmark:`` record of a job (its run time and memory, not the model's)."""
    return f"benchmarks/{stage}/{key}.tsv"
