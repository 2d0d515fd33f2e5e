"""What the user reads: the summary tables and the report's figures."""

from __future__ import annotations

from mobileforge import files, records
from mobileforge.job import Job, without_torch
from mobileforge.stages.common import listed


@without_torch
def summary(job: Job) -> None:
    """Join sidecars, evaluations, benchmarks and peaks into summary.csv, summary.md and the
    report's summary.html."""
    from mobileforge import summary_tables
    from mobileforge.bench import compare as paired
    from mobileforge.summary import build_rows, mark_searches, summarize

    artifacts = [
        records.read(records.ArtifactSidecar, files.sidecar_path(path))
        for path in listed(job, "artifacts")
    ]
    evaluations = {}
    for path in listed(job, "evaluations"):
        record = records.read(records.Evaluation, path)
        evaluations[record["artifact"]] = record
    benchmarks = {}
    for path in listed(job, "benchmarks"):
        record = records.read(records.BenchmarkResult, path)
        benchmarks[(record["artifact"], record["device"])] = record
    peaks = {}
    for path in job.input["peaks"]:
        record = records.read(records.PeakThroughput, path)
        peaks[record["device"]] = record
    comparisons = {}
    for path in job.input["comparisons"]:
        record = paired.check_record(files.read_json(path), path)
        comparisons[(record["model"], record["device"])] = record
    budget = job.params["accuracy_budget"]
    rows = build_rows(
        artifacts, evaluations, benchmarks, job.params["devices"], peaks, comparisons=comparisons
    )
    searches = [records.read(records.PruneSearch, path) for path in job.input["searches"]]
    frame = mark_searches(summarize(rows, budget, job.params["unstable_cv"], comparisons), searches)
    out = job.output
    summary_tables.write_summaries(
        frame,
        peaks,
        budget,
        out["summary"],
        out["markdown"],
        out["html"],
        pages=job.params["profile_pages"],
        searches=searches,
        recovery=job.params["recovery_figures"],
    )
    job.log(f"{len(frame)} rows -> {job.output['summary']}, {job.output['markdown']}")


@without_torch
def plots(job: Job) -> None:
    """Every figure of the report (params.figures: kind, device, model, path) from the summary
    and the benchmarks' per-iteration samples."""
    import pandas as pd

    from mobileforge.report import draw_figures

    summary = pd.read_csv(job.input["summary"], keep_default_na=True)
    benchmarks = [records.read(records.BenchmarkResult, path) for path in listed(job, "benchmarks")]
    draw_figures(job.params["figures"], summary, benchmarks, job.params["accuracy_budget"], job.log)


@without_torch
def plot_sensitivity(job: Job) -> None:
    """Layers ranked by int8 damage per quantizer, the ones kept in fp32 marked."""
    from mobileforge.report import plot_sensitivity as plot

    sensitivities = [files.read_json(path) for path in listed(job, "sensitivities")]
    decisions = [files.read_json(path) for path in listed(job, "decisions")]
    plot(sensitivities, decisions, job.output["plot"])


@without_torch
def plot_recovery(job: Job) -> None:
    """The recovery curve of each of a model's channel points, from their stages' sidecars."""
    from mobileforge.report import plot_recovery as plot

    points = {}
    for path in job.input["sidecars"]:
        sidecar = files.read_json(path)
        record = records.check(records.ChannelPruneRecord, sidecar["prune"], path)
        points[f"channel-{record['amount']:g}"] = record
    plot(points, job.wildcards["model"], job.output["plot"])
    stops = ", ".join(
        f"{label} {r['recovery']['stopped']} after {r['recovery']['epochs_used']}"
        for label, r in points.items()
    )
    job.log(f"{len(points)} channel points ({stops}) -> {job.output['plot']}")


@without_torch
def profile_page(job: Job) -> None:
    """A model's page of where each artifact's time goes (mobileforge.profile_page): its
    profiles, the artifacts' sidecars (layers kept in fp32) and its int8 sensitivity."""
    from mobileforge import profile_page as page

    profiles = [records.read(records.Profile, path) for path in job.input["profiles"]]
    sidecars = [
        records.read(records.ArtifactSidecar, files.sidecar_path(path))
        for path in job.input["artifacts"]
    ]
    sensitivities = [files.read_json(path) for path in job.input["sensitivities"]]
    model = job.wildcards["model"]
    page.write(model, profiles, sidecars, sensitivities, job.output["markdown"], job.output["html"])
    unavailable = sum(p["unavailable"] is not None for p in profiles)
    job.log(f"{len(profiles)} profiles ({unavailable} unavailable) -> {job.output['markdown']}")
