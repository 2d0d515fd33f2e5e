"""An attention user model (tests.attention_nets:build) through every variant the plan builds,
in both formats, in ``quantize.mode: auto`` (the default): one run checks that each artifact is
written, evaluated by its own runtime, benchmarked and in the summary, and that auto adds
``int8_dynamic`` once the fused model shows its MACs are in linear layers.

The artifacts come from the plan (:func:`mobileforge.plan.artifacts`, with the auto decision
read back from the fused stage), not from a list here, so a new variant is checked as soon as
the plan builds it.
"""

from __future__ import annotations

import json
import os
import time

import pandas as pd
import pytest
import yaml

from mobileforge import files, plan
from mobileforge.config import resolve_config
from mobileforge.layout import DYNAMIC
from tests.conftest import REPO, TIMINGS, snakemake
from tests.workflow_helpers import planned_outputs

pytestmark = pytest.mark.slow

MODEL = "attn"

#: The tests' attention model alone, every variant (pruned: l1_unstructured, as channel
#: pruning cuts q/k/v outputs without regard to the heads their reshape expects).
ATTENTION_RUN = {
    "defaults": {
        "input_shape": [1, 3, 16, 16],
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "seed": 0, "threads": 1},
        "quantize": {"calibration_batches": 2, "batch_size": 16},
        "prune": {"method": "l1_unstructured", "amount": 0.3},
    },
    "models": {MODEL: {"arch": "tests.attention_nets:build", "kwargs": {"dim": 16, "heads": 2}}},
    "dataset": {"name": "shapes", "train_size": 256, "calib_size": 64, "eval_size": 64},
    "variants": ["fp32", "int8", "int8_pruned"],
    "formats": ["ptl", "pte"],
    "devices": {"host": {"kind": "host", "threads": 1}},
    "benchmark": {"warmup": 1, "iterations": 5, "repeats": 2},
    "compare": {"rounds": 5, "runs_per_turn": 3, "processes": 1, "max_batches": 1},
}


def test_attention_model_builds_every_variant_in_both_formats(tmp_path, monkeypatch):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(ATTENTION_RUN))
    # The jobs import the user model by its import path, as a user's package on PYTHONPATH.
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    # Before the model is fused the plan holds its static artifacts and the checkpoint only.
    planned = planned_outputs(tmp_path, config)
    assert f"results/{MODEL}/pte/int8.xnnpack.pte" in planned
    assert not [path for path in planned if DYNAMIC in path]
    started = time.perf_counter()
    snakemake(tmp_path, config, env=env)
    TIMINGS["tiny run of the attention user model (--cores 2)"] = time.perf_counter() - started

    results = tmp_path / "results" / MODEL
    fused = json.loads((results / "fused.pt.json").read_text())
    assert plan.linear_share(fused["macs_by_kind"]) > 0.5
    monkeypatch.chdir(tmp_path)  # the plan reads the fused stage's decision from results/
    resolved = resolve_config(ATTENTION_RUN)
    artifacts = plan.artifacts(resolved, MODEL, plan.decided_on_disk(resolved))
    assert {a.fmt for a in artifacts} == {"ptl", "pte"}
    assert {"fp32", "int8", DYNAMIC, "int8_pruned"} <= {a.variant.split("-")[0] for a in artifacts}
    summary = pd.read_csv(tmp_path / "results/summary.csv").set_index("artifact")
    for artifact in artifacts:
        assert (tmp_path / artifact.path).stat().st_size > 0, artifact.path
        evaluation = files.read_json(tmp_path / artifact.eval_path)
        assert 0 <= evaluation["accuracy"] <= 100, artifact.path
        bench = files.read_json(tmp_path / artifact.bench_path("host"))
        assert bench["latency_ms"]["p50"] > 0, artifact.path
        row = summary.loc[artifact.path]
        assert row["accuracy"] == evaluation["accuracy"]
        # The summary writes milliseconds to 6 decimals.
        assert row["latency_ms_p50"] == pytest.approx(bench["latency_ms"]["p50"], abs=1e-6)
        assert (tmp_path / artifact.profile_path("host")).is_file(), artifact.path
    assert len(summary) == len(artifacts)

    for sidecar in ("ptl/int8_dynamic.x86.cpu.ptl.json", "pte/int8_dynamic.xnnpack.pte.json"):
        record = json.loads((results / sidecar).read_text())
        assert record["quantize_mode"] == "dynamic" and "head" in record["dynamic_layers"]
        assert record["int8_budget"]["reason"]  # the budget measured it as it does static int8
    static = json.loads((results / "pte/int8.xnnpack.pte.json").read_text())
    assert static["quantize_mode"] == "static" and static["dynamic_layers"] == []
    compared = json.loads((results / "compare/host.json").read_text())["artifacts"]
    assert {(a["variant"], a["format"]) for a in compared if a["variant"] == DYNAMIC} == {
        (DYNAMIC, "ptl"),
        (DYNAMIC, "pte"),
    }
    page = (tmp_path / plan.profile_page_paths(MODEL)["markdown"]).read_text()
    assert ".pte int8_dynamic" in page  # the page shows the variant auto added
    # Nothing left to do: the checkpoint's decision is read back, not redone.
    assert planned_outputs(tmp_path, config) == set()
