"""The workflow end to end on a tiny config: outputs, incremental plans, reproducibility.

One real run (the session's ``tiny_run``) is shared by the tests; each incremental test edits
a copy of the config and asks Snakemake for its dry-run plan, which must list exactly the jobs
that depend on the edit.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from mobileforge import job_usage, records
from tests import browser
from tests.artifacts import artifact_digests
from tests.conftest import REPO, insert_into, snakemake
from tests.waiting import wait_for
from tests.workflow_helpers import planned_outputs

pytestmark = pytest.mark.slow
# Jobs every edit replans after its own: the summary, the plots and the model's profile page
# (named by their first output).
PAGE = "results/report/profile/alpha.md"
DOWNSTREAM = {"results/summary.csv", "results/report/host/latency_accuracy.png", PAGE}
# The recovery curve of the model's channel points: redrawn whenever a channel point is rebuilt.
RECOVERY = "results/report/recovery/alpha.png"
# The paired comparisons of the tiny config's model: rerun whenever one of its artifacts is.
COMPARES = {"results/alpha/compare/host.json", "results/alpha/compare/host2.json"}


def write_config(workdir: Path, raw: dict, name: str) -> Path:
    path = workdir / name
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def run(tiny_run):
    return tiny_run


L1 = "int8_pruned-l1_unstructured-0.3"  # the tiny config's two prune points
CHANNEL = "int8_pruned-channel-0.3"


def test_summary_has_every_artifact_device_pair(run):
    workdir, _, _ = run
    frame = pd.read_csv(workdir / "results/summary.csv")
    for column in ["model", "variant", "format", "backend", "device", "engine", "params",
                   "size_bytes", "compressed_bytes", "prune_method", "prune_amount", "sparsity",
                   "accuracy", "accuracy_delta", "max_abs_diff", "latency_ms_p50",
                   "latency_ms_p90", "latency_ms_mean", "latency_ms_std", "load_ms", "threads",
                   "speedup", "artifact", "best", "pareto", "macs", "achieved_gmacs",
                   "peak_gmacs", "roofline_fraction"]:  # fmt: skip
        assert column in frame.columns
    assert len(frame) == 2 * 8  # (fp32, int8, 2 prune points) x 2 formats x 2 devices
    assert set(frame["variant"]) == {"fp32", "int8", L1, CHANNEL}
    assert frame["latency_ms_p50"].notna().all()
    assert frame["accuracy"].notna().all()
    fp32 = frame[frame["variant"] == "fp32"]
    assert (fp32["accuracy_delta"] == 0).all() and (fp32["speedup"] == 1).all()
    unstructured = frame[frame["variant"] == L1]
    # Zeros compress: the pruned artifact's download is smaller than the int8 one's.
    int8 = frame[frame["variant"] == "int8"].set_index(["format", "device"])
    for _, row in unstructured.iterrows():
        assert row["sparsity"] >= row["prune_amount"] - 0.01
        assert (
            row["compressed_bytes"] < int8.loc[(row["format"], row["device"]), "compressed_bytes"]
        )
    channel = frame[frame["variant"] == CHANNEL]
    assert (channel["prune_method"] == "channel").all()
    assert (channel["params"] < int8["params"].iloc[0]).all()  # physically smaller layers
    for _, row in channel.iterrows():
        assert row["size_bytes"] < int8.loc[(row["format"], row["device"]), "size_bytes"]
    for device, rows in frame.groupby("device"):
        record = json.loads((workdir / f"results/alpha/compare/{device}.json").read_text())
        # One best per device, unless its paired comparison could not trust itself (A/A).
        assert rows["best"].sum() == (1 if record["reliable"] else 0)
    assert frame.groupby("device")["pareto"].any().all()
    for path in frame["artifact"]:
        assert (workdir / path).is_file()
    # Every row is a host benchmark here: each has its distance from the limit.
    # One model, one count, except where channels were removed: those count their own.
    unpruned = frame[frame["variant"] != CHANNEL]
    assert (frame["macs"] > 0).all() and unpruned["macs"].nunique() == 1
    assert (frame[frame["variant"] == CHANNEL]["macs"] < unpruned["macs"].iloc[0]).all()
    achieved = frame["macs"] / frame["latency_ms_p50"] / 1e6  # MACs per p50, in G/s
    assert np.allclose(frame["achieved_gmacs"], achieved, rtol=1e-4)
    assert ((frame["roofline_fraction"] > 0) & frame["peak_kernel"].str.len().astype(bool)).all()


def test_each_device_has_a_paired_comparison_that_the_summary_reads(run):
    workdir, _, _ = run
    frame = pd.read_csv(workdir / "results/summary.csv")
    for device in ("host", "host2"):
        record = json.loads((workdir / f"results/alpha/compare/{device}.json").read_text())
        rows = frame[frame["device"] == device].set_index("artifact")
        compared = {row["path"]: row for row in record["artifacts"]}
        # References always; other candidates only within the accuracy budget.
        references = {p for p, row in compared.items() if row["role"] == "reference"}
        assert {(compared[p]["format"], compared[p]["variant"]) for p in references} == {
            ("ptl", "fp32"),
            ("ptl", "int8"),
            ("pte", "fp32"),
            ("pte", "int8"),
        }
        for path, row in rows.iterrows():
            over = row["accuracy_delta"] < -1.0 and row["variant"] not in ("fp32", "int8")
            assert (path in compared) == (not over) == bool(row["compared"]), path
        # The first reference is the plain .pte int8, held twice: the A/A control.
        first = record["artifacts"][0]
        assert (first["format"], first["variant"]) == ("pte", "int8")
        assert record["names"][record["control"]["copy"]] == f"{first['path']} (A/A copy)"
        assert record["rounds_kept"] >= 20 and all(
            sorted(r["order"]) == list(range(len(record["names"]))) for r in record["rounds"]
        )
        # The summary's speedup is the record's paired ratio (fp32 over the artifact).
        index = {row["path"]: i for i, row in enumerate(record["artifacts"])}
        int8 = "results/alpha/pte/int8.xnnpack.pte"
        fp32 = "results/alpha/pte/fp32.xnnpack.pte"
        pair = next(p for p in record["pairs"]
                    if (p["artifact"], p["reference"]) == (index[fp32], index[int8]))  # fmt: skip
        assert rows.loc[int8, "speedup"] == pytest.approx(pair["ratio"], rel=1e-5)
        assert rows.loc[int8, "speedup_low"] <= rows.loc[int8, "speedup"]


def test_peak_is_measured_once_per_host_device_through_both_runtimes(run):
    workdir, _, _ = run
    frame = pd.read_csv(workdir / "results/summary.csv")
    for device in ("host", "host2"):
        record = json.loads((workdir / f"results/peak/{device}.json").read_text())
        assert record["device"] == device and record["threads"] == 1
        assert record["host"]["cpu_model"]
        kernels = {k["kernel"]: k for k in record["kernels"]}
        assert set(kernels) == {
            "torch.mm (ATen)",
            "quantized::linear (x86 engine)",
            "XNNPACK linear (fp32, ExecuTorch)",
            "XNNPACK linear (int8, ExecuTorch)",
        }
        for precision in ("fp32", "int8"):
            candidates = [k for k in kernels.values() if k["precision"] == precision]
            fastest = max(candidates, key=lambda k: k["gmacs"])
            assert record["peak"][precision]["kernel"] == fastest["kernel"]
            rows = frame[(frame["device"] == device) & frame["variant"].str.startswith(precision)]
            assert np.allclose(rows["peak_gmacs"], fastest["gmacs"], rtol=1e-5)
    log = (workdir / "logs/peak/host.log").read_text()
    assert "peak fp32:" in log and "peak int8:" in log


def test_summary_md_names_the_best_artifact_of_each_device_first(run):
    workdir, _, _ = run
    frame = pd.read_csv(workdir / "results/summary.csv")
    text = (workdir / "results/summary.md").read_text()
    first_table = text.split("## Best artifact per model and device", 1)[1].split("## ", 1)[0]
    for _, row in frame[frame["best"]].iterrows():
        assert f"| {row['model']} | {row['device']} | {row['artifact']} |" in first_table
    assert text.index("## Best artifact") < text.index("## All artifacts")


def test_rerun_with_nothing_changed_plans_nothing(run):
    workdir, config, _ = run
    assert planned_outputs(workdir, config) == set()


def _branch(model: str, variant: str, fmts: tuple[str, ...] = ("ptl", "pte")) -> set[str]:
    """The artifacts, evaluations, benchmarks and profiles of one int8 variant, plus its stage
    files."""
    m = f"results/{model}"
    stems = {"ptl": f"{variant}.x86.cpu", "pte": f"{variant}.xnnpack"}
    planned = {f"{m}/{variant}.x86.pt"} if "ptl" in fmts else set()
    for fmt in fmts:
        stem = stems[fmt]
        planned |= {f"{m}/{fmt}/{stem}.{fmt}", f"{m}/eval/{fmt}/{stem}.json"}
        planned |= {f"{m}/bench/{fmt}/{stem}.{device}.json" for device in ("host", "host2")}
        planned |= {f"{m}/profile/{fmt}/{stem}.{device}.json" for device in ("host", "host2")}
    if variant.startswith("int8_pruned-channel") or variant == "int8":
        if "pte" in fmts:
            planned.add(f"{m}/pte/{variant}.xnnpack.recipe.json")
    return planned


def _sensitivities(model: str, variant: str, fmts: tuple[str, ...] = ("ptl", "pte")) -> set[str]:
    keys = {"ptl": "ptl.x86", "pte": "pte.xnnpack"}
    return {f"results/{model}/sensitivity/{variant}.{keys[fmt]}.json" for fmt in fmts}


def test_adding_a_sweep_point_plans_only_its_branches(run):
    workdir, _, raw = run
    edited = copy.deepcopy(raw)
    edited["models"]["alpha"]["prune"] = {"amount": [0.3, 0.5]}
    planned = planned_outputs(workdir, write_config(workdir, edited, "sweep.yaml"))
    new_l1, new_channel = "int8_pruned-l1_unstructured-0.5", "int8_pruned-channel-0.5"
    assert planned == (
        _branch("alpha", new_l1)
        | _branch("alpha", new_channel)
        | {"results/alpha/pruned-channel-0.5.pt", RECOVERY}
        | _sensitivities("alpha", new_channel)
        | {"results/report/sensitivity/alpha.png"}
        | COMPARES
        | DOWNSTREAM
    )


def test_removing_a_sweep_point_drops_only_that_point(run):
    workdir, _, raw = run
    edited = copy.deepcopy(raw)
    edited["models"]["alpha"]["prune"] = {"method": "channel"}  # the l1_unstructured point goes
    planned = planned_outputs(workdir, write_config(workdir, edited, "fewer.yaml"))
    assert planned == COMPARES | DOWNSTREAM


def test_removing_the_last_channel_point_trains_on_the_held_back_images_too(run):
    # train.holdout auto holds back a tenth of the train split only while the model has channel
    # points to recover: without them it trains on all of it, so all of the model rebuilds.
    workdir, _, raw = run
    edited = copy.deepcopy(raw)
    edited["models"]["alpha"]["prune"] = {"method": "l1_unstructured"}
    planned = planned_outputs(workdir, write_config(workdir, edited, "no_channel.yaml"))
    assert "results/alpha/checkpoint.pt" in planned
    assert not [path for path in planned if "channel" in path]
    # With the held-back share given, the model stays as it is and only the point goes.
    edited["models"]["alpha"].setdefault("train", {})["holdout"] = 0.1
    planned = planned_outputs(workdir, write_config(workdir, edited, "no_channel_held.yaml"))
    assert planned == {"results/report/sensitivity/alpha.png"} | COMPARES | DOWNSTREAM


def test_editing_round_to_replans_only_the_channel_point(run):
    workdir, _, raw = run
    edited = copy.deepcopy(raw)
    edited["models"]["alpha"]["prune"] = {"round_to": None}
    planned = planned_outputs(workdir, write_config(workdir, edited, "round_to.yaml"))
    assert planned == (
        _branch("alpha", CHANNEL) | {"results/alpha/pruned-channel-0.3.pt", RECOVERY}
        | _sensitivities("alpha", CHANNEL) | {"results/report/sensitivity/alpha.png"} | COMPARES
        | DOWNSTREAM
    )  # fmt: skip


def test_editing_the_accuracy_budget_replans_int8_but_not_the_sensitivity(run):
    workdir, _, raw = run
    edited = copy.deepcopy(raw)
    edited["models"]["alpha"]["quantize"] = {"accuracy_budget": 0.5, "max_fp32_layers": 2}
    planned = planned_outputs(workdir, write_config(workdir, edited, "budget.yaml"))
    # Every calibration reruns (the l1 point prunes the int8 weights, so it follows int8); the
    # channel-pruned fp32 model and every sensitivity stay.
    assert planned == (
        _branch("alpha", "int8") | _branch("alpha", L1) | _branch("alpha", CHANNEL)
        | {"results/report/sensitivity/alpha.png"} | COMPARES | DOWNSTREAM
    )  # fmt: skip


def test_editing_calibration_replans_the_sensitivity_too(run):
    workdir, _, raw = run
    edited = copy.deepcopy(raw)
    edited["models"]["alpha"]["quantize"] = {"observer": "minmax"}
    planned = planned_outputs(workdir, write_config(workdir, edited, "observer.yaml"))
    assert planned == (
        _branch("alpha", "int8") | _branch("alpha", L1) | _branch("alpha", CHANNEL)
        | _sensitivities("alpha", "int8") | _sensitivities("alpha", CHANNEL)
        | {"results/report/sensitivity/alpha.png"} | COMPARES | DOWNSTREAM
    )  # fmt: skip


def test_editing_reduce_range_replans_only_the_ptl_int8_chain(run):
    workdir, _, raw = run
    edited = copy.deepcopy(raw)
    edited["models"]["alpha"]["quantize"] = {"reduce_range": True}
    planned = planned_outputs(workdir, write_config(workdir, edited, "reduce.yaml"))
    ptl = ("ptl",)
    assert planned == (
        _branch("alpha", "int8", ptl) | _branch("alpha", L1, ptl) | _branch("alpha", CHANNEL, ptl)
        | _sensitivities("alpha", "int8", ptl) | _sensitivities("alpha", CHANNEL, ptl)
        | {"results/report/sensitivity/alpha.png"} | COMPARES | DOWNSTREAM
    )  # fmt: skip


def test_sensitivity_and_budget_records(run):
    workdir, _, _ = run
    for key in ("ptl.x86", "pte.xnnpack"):
        record = json.loads((workdir / f"results/alpha/sensitivity/int8.{key}.json").read_text())
        assert [layer["rank"] for layer in record["layers"]] == list(range(1, 7))
        assert record["control_images"] == 32  # the calibration images (2 batches of 16)
    sidecar = json.loads((workdir / "results/alpha/int8.x86.pt.json").read_text())
    assert sidecar["budget"]["accuracy_budget"] == 1.0
    assert sidecar["budget"]["steps"][0]["n"] == 64  # the whole calibration split
    frame = pd.read_csv(workdir / "results/summary.csv")
    int8 = frame[frame["variant"] != "fp32"]
    assert (int8["fp32_layers"] == [len(s.split()) if isinstance(s, str) else 0
                                    for s in int8["fp32_layer_names"]]).all()  # fmt: skip
    assert frame[frame["variant"] == "fp32"]["fp32_layers"].isna().all()
    assert (workdir / "results/report/sensitivity/alpha.png").stat().st_size > 10_000


def test_the_channel_point_recovers_on_the_images_training_held_back(run):
    workdir, _, _ = run
    checkpoint = json.loads((workdir / "results/alpha/checkpoint.pt.json").read_text())
    sidecar = json.loads((workdir / "results/alpha/pruned-channel-0.3.pt.json").read_text())
    record = records.check(records.ChannelPruneRecord, sidecar["prune"], "pruned-channel-0.3")
    recovery = record["recovery"]
    # The train stage and the fine-tune hold back the same images: the unpruned model scores
    # the same on them in both jobs.
    assert recovery["holdout_images"] == checkpoint["holdout"]["images"] > 0
    assert recovery["reference_holdout_acc"] == checkpoint["holdout"]["accuracy"]
    assert recovery["stopped"] in ("within_budget", "patience", "ceiling")
    assert [epoch["holdout_acc"] is not None for epoch in recovery["history"]] == [True]
    log = (workdir / "logs/prune_channel/alpha.channel-0.3.log").read_text()
    assert "holdout_acc" in log and "nan" not in log and "recovery: " in log
    # Every artifact of the point says how many epochs its recovery used.
    frame = pd.read_csv(workdir / "results/summary.csv")
    channel = frame["variant"] == CHANNEL
    assert (frame[channel]["finetune_epochs"] == recovery["epochs_used"]).all()
    assert frame[~channel]["finetune_epochs"].isna().all()


def test_editing_one_device_replans_only_its_benchmarks(run):
    workdir, _, raw = run
    edited = copy.deepcopy(raw)
    edited["devices"]["host2"]["iterations"] = 4
    planned = planned_outputs(workdir, write_config(workdir, edited, "device.yaml"))
    assert DOWNSTREAM <= planned
    benches = {path for path in planned - DOWNSTREAM if "/bench/" in path}
    assert len(benches) == 8  # one per artifact
    assert all(path.endswith(".host2.json") for path in benches)
    # ... and the profiles checked against them
    assert planned - DOWNSTREAM - benches == {
        path.replace("/bench/", "/profile/") for path in benches
    }


def test_adding_a_model_plans_only_its_chain_and_the_summary(run):
    workdir, _, raw = run
    edited = copy.deepcopy(raw)
    edited["models"]["gamma"] = {"arch": "tinycnn", "kwargs": {"width": 4}}
    planned = planned_outputs(workdir, write_config(workdir, edited, "added.yaml"))
    plot, page = "results/report/sensitivity/gamma.png", "results/report/profile/gamma.md"
    recovery = "results/report/recovery/gamma.png"
    # alpha's page reads nothing of gamma's
    downstream = DOWNSTREAM - {PAGE} | {plot, page, recovery}
    assert downstream <= planned and PAGE not in planned
    own = planned - downstream
    assert all(path.startswith("results/gamma/") for path in own)
    # jobs: train, fuse (+ reference logits), 4 sensitivities, 2 int8 (FX), 2 int8 recipes
    # (.pte), 2 prunes, 8 artifacts, 8 evaluations, 16 benchmarks, 16 profiles, 2 paired
    # comparisons (and the sensitivity plot)
    assert len(own) == 12 + 8 + 8 + 16 + 16 + 2


def test_every_benchmark_has_a_profile_checked_against_it(run):
    workdir, _, _ = run
    benches = sorted((workdir / "results").glob("*/bench/*/*.json"))
    assert len(benches) == 16
    for bench in benches:
        path = Path(str(bench).replace("/bench/", "/profile/"))
        profile = records.read(records.Profile, path)
        benchmark = records.read(records.BenchmarkResult, bench)
        assert profile["unavailable"] is None and profile["layers"]
        assert profile["method"] == {"pte": "etdump", "ptl": "lite_profiler"}[profile["format"]]
        assert profile["runs"] == 5 and profile["threads"] == 1  # config.yaml's default runs
        assert profile["benchmark_p50_ms"] == benchmark["latency_ms"]["p50"]
        assert sum(row["share"] for row in profile["layers"]) == pytest.approx(1.0, rel=0.05)
        assert profile["agreement"] and profile["coverage"] > 0
        assert profile["toolchain"]["code"]


def test_a_cold_clean_run_gives_every_artifact_of_the_warm_one(run, tmp_path):
    # The session's run is warm (jobs forked from the run's worker); this one builds every
    # artifact again with each job in its own process, in a directory of its own.
    workdir, config, _ = run
    warm = artifact_digests(workdir)
    assert len(warm) >= 40  # data, checkpoint, stage files, .ptl/.pte artifacts, evaluations
    cold = tmp_path / "cold"
    cold.mkdir()
    environ = {**os.environ, "MOBILEFORGE_WARM": "0"}
    snakemake(cold, config, *warm, env=environ)
    assert artifact_digests(cold) == warm
    modes = {
        directory.name: {
            job_usage.read(path)["mode"] for path in (directory / "logs").rglob("*.usage.json")
        }
        for directory in (workdir, cold)
    }
    assert modes == {workdir.name: {"warm"}, cold.name: {"cold"}}


def test_timeouts_and_retries_rerun_nothing_but_cooldown_reruns_the_benchmarks(run):
    workdir, _, raw = run
    edited = copy.deepcopy(raw)
    edited["benchmark"]["retries"] = 5
    edited["benchmark"]["timeouts"] = {"command_s": 3, "run_s": 60, "wait_for_device_s": 1}
    assert planned_outputs(workdir, write_config(workdir, edited, "ops.yaml")) == set()
    edited["benchmark"]["cooldown"] = {"pause_s": 1}
    planned = planned_outputs(workdir, write_config(workdir, edited, "cool.yaml"))
    # every benchmark of both devices, and the profiles checked against them
    assert {p.replace("/profile/", "/bench/") for p in planned - DOWNSTREAM} == {
        p for p in planned - DOWNSTREAM if "/bench/" in p
    }
    assert len(planned - DOWNSTREAM) == 2 * 16


def test_benchmark_results_combine_repeats_with_thermal_snapshots(run):
    workdir, _, _ = run
    result = json.loads((workdir / "results/alpha/bench/pte/fp32.xnnpack.host.json").read_text())
    assert result["repeats"] == 2 and len(result["runs"]) == 2
    assert result["latency_ms"]["runs"] == 2 and result["latency_ms"]["cv"] is not None
    for run_ in result["runs"]:
        assert run_["latency_ms"]["count"] == 5 and run_["ended_unix"] > run_["started_unix"]
        assert {"zones", "cur_freq_khz"} <= run_["thermal_before"].keys()
    assert result["timing"]["process_s"] >= result["timing"]["job_s"] > 0
    # Start-up is the job process's (interpreter, Snakemake's preamble, the hand-over to the
    # warm worker), taken at the stage's first line like the usage record's overhead, not the
    # warm fork's age, which misses the preamble (0.2 s and more).
    usage = job_usage.read(workdir / "logs/benchmark/alpha.pte.fp32.xnnpack.host.usage.json")
    assert usage["mode"] == "warm" and usage["overhead_s"] > 0
    assert result["timing"]["startup_s"] == pytest.approx(usage["overhead_s"], abs=0.05)


def test_report_renders_in_chromium_with_every_plot_and_both_summaries(run, tmp_path):
    """`snakemake --report report.html`, opened in headless Chromium and clicked through."""
    workdir, config, _ = run
    snakemake(workdir, config, "--report", "report.html")
    report = workdir / "report.html"
    if browser.chromium_binaries() is None:
        pytest.skip(
            "Chromium is not installed (Debian packages chromium and chromium-driver; "
            "bash .ci/run installs them as root)"
        )
    pngs = (workdir / "results/report").rglob("*.png")
    figures = sorted(str(path.relative_to(workdir)) for path in pngs)
    # Per device: accuracy plot, distribution, load/memory; per model: sizes, int8 sensitivity,
    # the recovery of its channel points.
    assert len(figures) == 2 * 3 + 1 + 1 + 1
    with browser.chromium() as driver:
        categories = browser.open_report(driver, report)
        assert {c: {s: len(p) for s, p in sub.items()} for c, sub in categories.items()} == {
            "host": {"all models": 1, "alpha": 2},
            "host2": {"all models": 1, "alpha": 2},
            "artifact sizes (any device)": {"alpha": 1},
            "Summary": {"tables": 3},
            "Sensitivity": {"alpha": 1},
            "Pruning": {"alpha": 1},
            "Where the time goes": {"alpha": 2},
        }
        results = driver.execute_script("return results;")
        assert sorted(p for p in results if p.endswith(".png")) == figures
        assert all(entry["caption"].strip() for entry in results.values())
        seen = set()
        for category, subcategories in categories.items():
            for subcategory, paths in subcategories.items():
                # A row shows its first label, or its path where the result has no labels.
                by_label = {next(iter((results[p]["labels"] or {p: p}).values())): p for p in paths}
                # One row per result; each listing waits for all of them (a table caught while
                # it fills in had fewer rows than the first listing).
                count = len(paths)
                for index in range(count):
                    row = browser.show_results(driver, report, category, subcategory, count)[index]
                    path = by_label[row.text.strip()]
                    seen.add(path)
                    if path.endswith((".csv", ".md")):  # download buttons carry the file itself
                        href = row.find_element("xpath", "./td[last()]//a[1]").get_attribute("href")
                        data = base64.b64decode(href.split("base64,", 1)[1])
                        assert data == (workdir / path).read_bytes()
                        continue
                    shown = browser.view_row(driver, row)
                    if path.endswith(".png"):
                        assert shown["kind"] == "img"
                        with Image.open(workdir / path) as image:
                            assert (shown["natural_width"], shown["natural_height"]) == image.size
                    elif "/profile/" in path:
                        assert shown["kind"] == "html"
                        assert "alpha: where each artifact's time goes" in shown["text"]
                        assert "results/alpha/pte/" in shown["text"]
                    else:
                        assert shown["kind"] == "html"
                        assert "Best artifact per model and device" in shown["text"]
                        assert "results/alpha/pte/" in shown["text"]
        assert seen == set(results)
        rows = browser.show_results(driver, report, "host", "all models")
        browser.view_row(driver, rows[0])
        screenshot = tmp_path / "report.png"
        driver.save_screenshot(str(screenshot))
    with Image.open(screenshot) as image:
        assert image.width >= 1200
        # A rendered plot, not a blank page: thousands of distinct colours.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 1000


# -- code and toolchain changes ----------------------------------------------------------------
WORKFLOW_PARTS = ("Snakefile", "rules", "scripts", "mobileforge", "schemas", "envs", "report",
                  "profiles")  # fmt: skip


def test_an_edit_of_the_quantize_code_replans_quantize_and_downstream_only(run, tmp_path):
    workdir, config, _ = run
    checkout = tmp_path / "checkout"  # the workflow with one function of quantize/fx.py edited
    checkout.mkdir()
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, checkout / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, checkout / part)
    insert_into(checkout / "mobileforge" / "quantize" / "fx.py", "quantize_static", "assert True")
    planned = planned_outputs(workdir, config, snakefile=checkout / "Snakefile")
    # The FX calibrations (int8, and int8 of the channel-pruned model), then everything made from
    # their int8 models; not the data, checkpoint, fused or pruned fp32 models, the sensitivities
    # (they calibrate but do not convert), fp32 artifacts or the .pte programs (pt2e).
    ptl = ("ptl",)
    assert planned == (
        _branch("alpha", "int8", ptl) | _branch("alpha", L1, ptl) | _branch("alpha", CHANNEL, ptl)
        | {"results/report/sensitivity/alpha.png"} | COMPARES | DOWNSTREAM
    )  # fmt: skip


def test_an_executorch_upgrade_replans_only_the_pte_jobs(run, tmp_path):
    workdir, config, _ = run
    # A rebuilt executorch wheel: same release (the pin check passes), another build tag.
    fake = tmp_path / "site" / "executorch-1.5.1+rebuilt.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: executorch\nVersion: 1.5.1+rebuilt\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    planned = planned_outputs(workdir, config, env=env)
    pte = ("pte",)
    # Every .pte job: recipes, sensitivities, programs, their evaluations and benchmarks, and the
    # peak measurement (it times ExecuTorch programs); nothing on the .ptl side.
    assert planned == (
        _branch("alpha", "fp32", pte) | _branch("alpha", "int8", pte)
        | _branch("alpha", L1, pte) | _branch("alpha", CHANNEL, pte)
        | _sensitivities("alpha", "int8", pte) | _sensitivities("alpha", CHANNEL, pte)
        | {"results/peak/gemm.fp32.xnnpack.pte", "results/peak/host.json",
           "results/peak/host2.json", "results/report/sensitivity/alpha.png"}
        | COMPARES | DOWNSTREAM
    )  # fmt: skip


# -- the .pte int8 programs: calibrated once ----------------------------------------------------
def test_int8_programs_are_the_bytes_of_calibrating_again(run):
    """export_pte lowers the program quantize_pte saved; calibrating and converting the model
    again with the recipe, as export_pte did before, gives every int8 program's bytes."""
    from mobileforge import chain, files, plan
    from mobileforge.config import resolve_config
    from mobileforge.data import load_dataset
    from mobileforge.export import pte
    from mobileforge.prune.pt2e import prune_converted
    from mobileforge.quantize.pt2e import quantize_pt2e
    from mobileforge.quantize.recipe import Recipe

    workdir, _, raw = run
    data = load_dataset(workdir / plan.dataset_path(resolve_config(raw), "alpha"))
    for variant in ("int8", CHANNEL, L1):
        qvariant = "int8" if variant == L1 else variant  # l1 prunes the int8 program
        fused, meta = chain.load_fused_model(workdir / plan.fused_path("alpha", qvariant))
        decision = files.read_json(workdir / plan.pte_recipe_path("alpha", qvariant, "xnnpack"))
        example = chain.example_input(meta)
        recipe = Recipe.from_record(decision["recipe"])
        converted, _ = quantize_pt2e(fused, example, "xnnpack", data["calib_x"], recipe)
        artifact = workdir / f"results/alpha/pte/{variant}.xnnpack.pte"
        sidecar = files.read_json(files.sidecar_path(artifact))
        lowered = "int8"
        if variant == L1:
            prune_converted(converted, sidecar["prune"])  # the per-layer amounts it chose
            lowered = "int8_pruned"
        program, _ = pte.lower(converted, example, "xnnpack", lowered)
        assert program == artifact.read_bytes(), variant
        saved = plan.pte_program_path("alpha", qvariant, "xnnpack")
        assert sidecar["int8_program"] == {
            "path": saved,
            "sha256": files.sha256_file(workdir / saved),
            "recipe": plan.pte_recipe_path("alpha", qvariant, "xnnpack"),
        }


def _dry_run_inputs(workdir: Path, config: Path, target: str) -> set[str]:
    """The input files of the job that makes ``target``, as Snakemake plans it."""
    text = snakemake(workdir, config, "--dry-run", "--force", target)
    return set(re.search(r"^\s+input: (.+)$", text, re.M).group(1).split(", "))


@pytest.mark.parametrize("variant", ["int8", L1])
def test_export_pte_lowers_the_saved_program_without_calibrating(run, variant, tmp_path):
    """No calibration in export_pte: the int8 job does not even read the calibration data; the
    l1 point reads it for its pruning budget only. Same bytes and sidecar as the run's job."""
    import torch

    from mobileforge import files
    from mobileforge.config import resolve_config
    from mobileforge.job import Job
    from mobileforge.quantize import pt2e
    from mobileforge.stages.export import export_pte

    workdir, config, raw = run
    target = f"results/alpha/pte/{variant}.xnnpack.pte"
    inputs = {
        "fused": "results/alpha/fused.pt",
        "recipe": "results/alpha/pte/int8.xnnpack.recipe.json",
        "program": "results/alpha/pte/int8.xnnpack.pt2",
    }
    prune = None
    if variant == L1:
        inputs["data"] = "results/data/shapes-3x16x16.pt"
        budget = resolve_config(raw)["selection"]["accuracy_budget"]
        prune = {"method": "l1_unstructured", "amount": 0.3, "accuracy_budget": budget}
    assert _dry_run_inputs(workdir, config, target) == set(inputs.values())
    output = tmp_path / "program.pte"
    job = Job(
        input=inputs,
        output={"artifact": output, "sidecar": files.sidecar_path(output)},
        params={"prune": prune},
        wildcards={"model": "alpha", "variant": variant, "backend": "xnnpack"},
    )

    def calibrate(*args, **kwargs):
        raise AssertionError("export_pte calibrated again")

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pt2e, "prepare_pt2e_model", calibrate)
        patch.setattr(pt2e, "_calibrate", calibrate)
        patch.chdir(workdir)
        torch.set_num_threads(1)  # as the run's job: the l1 budget's logits
        try:
            export_pte(job)
        finally:
            torch.set_num_threads(threads)
    assert output.read_bytes() == (workdir / target).read_bytes()
    ours, runs = (files.read_json(files.sidecar_path(p)) for p in (output, workdir / target))
    for key in ("artifact", "toolchain"):  # where it was written; the params' fingerprint
        ours.pop(key), runs.pop(key)
    assert ours == runs


def test_sidecars_and_summary_record_the_toolchain(run):
    workdir, _, _ = run
    sidecar = yaml.safe_load((workdir / "results/alpha/pte/int8.xnnpack.pte.json").read_text())
    packages = sidecar["toolchain"]["packages"]
    assert packages["executorch"] == metadata.version("executorch")
    assert packages["torch"] == metadata.version("torch")
    frame = pd.read_csv(workdir / "results/summary.csv")
    pte = frame[frame["format"] == "pte"]
    assert pte["built_with"].str.contains(f"executorch=={metadata.version('executorch')}").all()
    assert not frame[frame["format"] == "ptl"]["built_with"].str.contains("executorch").any()


# -- interrupted runs -------------------------------------------------------------------------
ARTIFACTS = [
    f"results/alpha/{stem}"
    for stem in ("checkpoint.pt", "fused.pt", "int8.x86.pt", f"{L1}.x86.pt",
                 "ptl/fp32.cpu.ptl", "ptl/int8.x86.cpu.ptl", f"ptl/{L1}.x86.cpu.ptl",
                 "pte/fp32.xnnpack.pte", "pte/int8.xnnpack.pte", f"pte/{L1}.xnnpack.pte")
]  # fmt: skip


#: The rules up to the fused model: a run is killed while a job after them runs.
BEFORE_FUSED = {"dataset", "train", "fuse"}


def _running_jobs(log: Path) -> list[tuple[str, str]]:
    """Rule and log file of the jobs a Snakemake log shows started and not (yet) finished."""
    text = log.read_text() if log.exists() else ""
    started = {}
    for block in re.split(r"\n(?=\[\w{3} \w{3} )", text):  # one block per timestamp
        rule = re.search(r"^(?:local)?(?:rule|checkpoint) (\w+):$", block, re.M)
        jobid = re.search(r"^\s+jobid: (\d+)$", block, re.M)
        job_log = re.search(r"^\s+log: ([^,\n]+)$", block, re.M)
        if rule and jobid and job_log:
            started[jobid.group(1)] = (rule.group(1), job_log.group(1))
    finished = set(re.findall(r"^Finished jobid: (\d+) ", text, re.M))
    return [job for jobid, job in started.items() if jobid not in finished]


def test_a_killed_run_resumes_to_the_bytes_of_an_uninterrupted_one(run, tmp_path):
    reference, config, _ = run
    workdir = tmp_path / "killed"
    workdir.mkdir()
    shutil.copy(config, workdir / "config.yaml")
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
               "--cores", "2", *ARTIFACTS]  # fmt: skip
    with open(tmp_path / "killed.log", "w") as log:
        # Its own session, so kill -9 reaches Snakemake and every job it started, like a crash.
        process = subprocess.Popen(
            command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

        # Killed while a job made from the fused model runs: Snakemake's log says it started
        # and not that it finished, and the job has opened its own log. An order of events, not
        # a delay.
        def running() -> list[str]:
            assert process.poll() is None, (tmp_path / "killed.log").read_text()
            return [
                rule
                for rule, job_log in _running_jobs(tmp_path / "killed.log")
                if rule not in BEFORE_FUSED and (workdir / job_log).exists()
            ]

        wait_for(running, "a job after the fused model to start", 600)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert (workdir / "results/alpha/fused.pt").exists()
    made = [target for target in ARTIFACTS if (workdir / target).exists()]
    assert len(made) < len(ARTIFACTS), "killed too late"

    # A plain rerun stops: on jobs killed after writing their outputs (--rerun-incomplete) or,
    # once those are allowed to rerun, on the lock the killed run left (--unlock).
    again = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600)
    text = again.stdout + again.stderr
    assert again.returncode != 0 and ("--rerun-incomplete" in text or "--unlock" in text), text
    again = subprocess.run(
        [*command, "--rerun-incomplete"], cwd=workdir, capture_output=True, text=True, timeout=600
    )
    assert again.returncode != 0 and "Directory cannot be locked" in again.stderr, again.stderr
    # What the README says to do after a kill: unlock, then rerun the incomplete jobs.
    snakemake(workdir, workdir / "config.yaml", "--unlock")
    snakemake(workdir, workdir / "config.yaml", "--rerun-incomplete", *ARTIFACTS)
    for target in ARTIFACTS:
        assert (workdir / target).read_bytes() == (reference / target).read_bytes(), target
    leftovers = [path.name for path in (workdir / "results").rglob("*.tmp")]
    assert leftovers == [], "a killed job's temporary file was left behind"
