"""Results from a run that ended in errors: the summary of whatever succeeded.

Snakemake runs no job whose inputs failed, so one unplugged phone would keep
``results/summary.csv`` and the plots from ever being built, ``--keep-going`` or not. Instead:

* a failing benchmark job writes down its error (:func:`record_failure`, under
  ``.mobileforge/failed/``; a later success removes it) and still fails, so Snakemake reruns it
  next time and nothing else mistakes it for a result;
* when the run ends in errors, the workflow's ``onerror`` handler calls :func:`salvage`, which
  builds ``results/summary.csv`` and the plots from the artifacts, evaluations and benchmarks
  that exist, with one row per planned benchmark: failed ones carry ``benchmark failed: <error>``
  in ``note``, ones that never ran say so. Snakemake still ends the run non-zero.

The salvaged files are dated back to the epoch: they were not made by their rule, so the next
run must rebuild them from whatever it adds, even if that is nothing new.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mobileforge import files, layout, records

FAILED_DIR = Path(".mobileforge/failed")
#: Longest error kept in a note (the job's log has all of it).
NOTE_CHARS = 500


def failure_path(benchmark_output: str | os.PathLike[str]) -> Path:
    return FAILED_DIR / Path(benchmark_output)


def record_failure(
    benchmark_output: str | os.PathLike[str], artifact: str, device: str, error: BaseException
) -> None:
    """Write down why the benchmark meant to produce ``benchmark_output`` failed."""
    message = " ".join(f"{type(error).__name__}: {error}".split())
    if len(message) > NOTE_CHARS:
        message = message[: NOTE_CHARS - 3] + "..."
    files.write_json_atomic(
        failure_path(benchmark_output), {"artifact": artifact, "device": device, "error": message}
    )


def clear_failure(benchmark_output: str | os.PathLike[str]) -> None:
    failure_path(benchmark_output).unlink(missing_ok=True)


def _read(path: str | os.PathLike[str], shape: type | None = None) -> Any | None:
    """The record at ``path`` (held to ``shape``), or None where there is none to read. A
    record of another shape is an error, not a gap: it names itself (records.RecordError)."""
    try:
        record = files.read_json(path)
    except (OSError, ValueError):
        return None
    return record if shape is None else records.check(shape, record, os.fspath(path))


def salvage(config: dict[str, Any], summary_path: str = layout.SUMMARY) -> str | None:
    """Build the summary and plots of a failed run from what exists; return a one-line report.

    Returns None when there is nothing to summarise (no artifact was built).
    """
    from mobileforge import params, plan, summary_tables
    from mobileforge.summary import build_rows, mark_searches, summarize  # pandas: only now

    decided, verdicts = plan.decided_on_disk(config), plan.verdicts_on_disk(config)
    built = [a for a in plan.all_artifacts(config, decided, verdicts) if Path(a.path).is_file()]
    sidecars = [_read(files.sidecar_path(a.path), records.ArtifactSidecar) for a in built]
    artifacts = [s for s in sidecars if s is not None]
    if not artifacts:
        return None
    evaluations: dict[str, Any] = {}
    for artifact in built:
        record = _read(artifact.eval_path, records.Evaluation)
        if record is not None:
            evaluations[record["artifact"]] = record
    benchmarks: dict[tuple[str, str], Any] = {}
    failures: dict[tuple[str, str], str] = {}
    planned: set[tuple[str, str]] = set()
    for artifact, device in plan.benchmarks(config, decided, verdicts):
        planned.add((artifact.path, device))
        record = _read(artifact.bench_path(device), records.BenchmarkResult)
        if record is not None:
            benchmarks[(record["artifact"], record["device"])] = record
            continue
        failed = _read(failure_path(artifact.bench_path(device)))
        if failed is not None:
            failures[(artifact.path, device)] = failed["error"]
    devices = params.summary_devices(config)
    peaks = {}
    for device in plan.host_devices(config):
        record = _read(plan.peak_path(device), records.PeakThroughput)
        if record is not None:
            peaks[device] = record
    comparisons = {}
    for model, device in plan.comparisons(config):
        record = _read(plan.compare_path(model, device))
        if record is not None:
            comparisons[(model, device)] = record
    rows = build_rows(
        artifacts, evaluations, benchmarks, devices, peaks, failures=failures, planned=planned,
        comparisons=comparisons,
    )  # fmt: skip
    budget = config["selection"]["accuracy_budget"]
    found = [_read(path, records.PruneSearch) for path in plan.search_paths(config)]
    searches = [search for search in found if search is not None]
    frame = summarize(rows, budget, config["benchmark"]["unstable_cv"], comparisons)
    frame = mark_searches(frame, searches)
    results = Path(summary_path).parent
    tables = [summary_path, str(results / "summary.md"), str(results / "report/summary.html")]
    summary_tables.write_summaries(frame, peaks, budget, *tables, searches=searches)
    written = list(tables)
    try:  # the same figures the plots rule draws, from what was measured
        from mobileforge.report import draw_figures

        figures = [
            {"kind": f.kind, "device": f.device, "model": f.model, "path": f.path}
            for f in plan.figures(config)
        ]
        draw_figures(figures, frame, list(benchmarks.values()), budget)
        written += [figure["path"] for figure in figures]
    except Exception as error:  # the table matters more than its pictures
        print(f"mobileforge: plots of the partial summary failed: {error}")
    for path in written:
        os.utime(path, (0, 0))
    missing = len(planned) - len(benchmarks)
    return (
        f"mobileforge: the run ended in errors; {summary_path} (and its plots) built from what "
        f"succeeded: {len(benchmarks)} of {len(planned)} benchmarks, {len(failures)} failed "
        f"(error in their note), {missing - len(failures)} not run"
    )
