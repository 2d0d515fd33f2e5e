"""Per-run events -> the profile's layers: per name (numbered where one occurs more than once
in a run), calls per run, median time over runs, share of the total, kind.

Both profilers hand over the same raw shape: one list per profiled run of ``(name, ms)`` in
the order the events happened, covering the operators (and a delegate call's rest) once, with
no event nested in another, so a run's events add up to its time inside operators.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence

from mobileforge import records
from mobileforge.profile.classify import kind

Run = Sequence[tuple[str, float]]

#: The operators the MAC count is of (mobileforge.macs): convolutions and matrix products.
MAIN_COMPUTE = re.compile(r"conv|linear|matmul|addmm|\bmm\b|bmm|einsum|Convolution|Fully Connected")


def numbered(run: Run) -> list[tuple[str, float]]:
    """``run`` with each name that occurs more than once in it numbered by occurrence (``#1``,
    ``#2``, in order), as XNNPACK numbers its operators: one layer per call, not per operator
    type (the lite interpreter calls every convolution ``quantized::conv2d``)."""
    counts: dict[str, int] = {}
    for name, _ in run:
        counts[name] = counts.get(name, 0) + 1
    seen: dict[str, int] = {}
    result = []
    for name, ms in run:
        if counts[name] > 1:
            seen[name] = seen.get(name, 0) + 1
            name = f"{name} #{seen[name]}"
        result.append((name, ms))
    return result


def _kinds(runs: Sequence[Run]) -> dict[str, str]:
    """Each name's kind, from the first run that has it (with the event after it)."""
    kinds: dict[str, str] = {}
    for run in runs:
        for i, (name, _) in enumerate(run):
            if name not in kinds:
                following = run[i + 1][0] if i + 1 < len(run) else None
                kinds[name] = kind(name, following)
    return kinds


def layers(runs: Sequence[Run]) -> tuple[list[records.ProfiledLayer], float, float]:
    """The layers (largest median first), the sum of their medians (ms: what ``share`` is of)
    and the median over runs of each run's sum (ms).

    The two totals agree on a quiet machine. Where another process takes the CPU, each run
    loses a time slice to it inside some operator, a different one each run: the median run's
    sum holds that slice, each operator's median does not. ``macs`` and ``module`` are left
    None: the caller fills them where it knows them.
    """
    if not runs:
        raise ValueError("no profiled runs to build layers from")
    runs = [numbered(run) for run in runs]
    totals: dict[str, list[float]] = {}
    calls: dict[str, int] = {}
    order: list[str] = []
    for index, run in enumerate(runs):
        counts: dict[str, int] = {}
        for name, ms in run:
            if name not in totals:
                totals[name] = [0.0] * len(runs)
                order.append(name)
            totals[name][index] += ms
            counts[name] = counts.get(name, 0) + 1
        for name, n in counts.items():
            calls[name] = max(calls.get(name, 0), n)
    run_sum_ms = statistics.median(sum(ms for _, ms in run) for run in runs)
    medians = {name: statistics.median(totals[name]) for name in order}
    layers_ms = sum(medians.values())
    kinds = _kinds(runs)
    rows: list[records.ProfiledLayer] = []
    for name in order:
        median = medians[name]
        rows.append(
            {
                "name": name,
                "kind": kinds[name],  # type: ignore[typeddict-item]
                "module": None,
                "calls": calls[name],
                "median_ms": median,
                "share": median / layers_ms if layers_ms > 0 else 0.0,
                "macs": None,
                "gmacs_per_s": None,
            }
        )
    rows.sort(key=lambda row: row["median_ms"], reverse=True)
    return rows, layers_ms, run_sum_ms


def attribute(
    rows: list[records.ProfiledLayer],
    modules: Mapping[str, str | None],
    macs: Mapping[str, int] | None,
) -> int:
    """Fill each row's ``module`` from ``modules`` (by layer name) and, with ``macs`` (per
    module of the float model), its ``macs`` and ``gmacs_per_s``: a module's MACs go to its one
    convolution or matrix product (:data:`MAIN_COMPUTE`), not to its activation, quantize,
    dequantize or shape reads; a module with several gets none. Returns the MACs attributed."""
    for row in rows:
        row["module"] = modules.get(row["name"])
    if not macs:
        return 0
    compute: dict[str, list[records.ProfiledLayer]] = {}
    for row in rows:
        if row["module"] and row["kind"] == "compute" and MAIN_COMPUTE.search(row["name"]):
            compute.setdefault(row["module"], []).append(row)
    attributed = 0
    for module, found in compute.items():
        if len(found) != 1 or not macs.get(module):
            continue
        row = found[0]
        row["macs"] = macs[module]
        # MACs per ms / 1e6 = GMAC/s
        row["gmacs_per_s"] = macs[module] / row["median_ms"] / 1e6 if row["median_ms"] else None
        attributed += macs[module]
    return attributed
