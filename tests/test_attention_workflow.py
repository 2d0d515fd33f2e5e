"""An attention user model (tests.user_nets:build_attention) through every variant the plan
builds, in both formats: each artifact is written, evaluated by its own runtime and benchmarked.

The variants come from the plan (:func:`mobileforge.plan.artifacts`), not from a list here, so
a new variant is checked as soon as the plan builds it.
"""

from __future__ import annotations

import copy
import os
import time

import pandas as pd
import pytest
import yaml

from mobileforge import files, plan
from mobileforge.config import resolve_config
from tests.conftest import REPO, TIMINGS, TINY_CONFIG, snakemake

pytestmark = pytest.mark.slow

MODEL = "attn"


def attention_config(tiny: dict) -> dict:
    """The tiny config with the attention model in place of its CNN, on one host device."""
    raw = copy.deepcopy(tiny)
    raw["models"] = {
        MODEL: {"arch": "tests.user_nets:build_attention", "kwargs": {"image_size": 16}}
    }
    # Unstructured pruning only: channel pruning (Torch-Pruning) cuts q/k/v outputs without
    # regard to the heads their reshape expects, and the pruned model no longer runs.
    raw["defaults"]["prune"] = {"method": "l1_unstructured", "amount": 0.3}
    raw["devices"] = {"host": {"kind": "host", "threads": 1}}
    raw["benchmark"] = {"warmup": 1, "iterations": 3, "repeats": 1}
    raw["compare"] = {"rounds": 5, "runs_per_turn": 2, "processes": 1, "max_batches": 1}
    return raw


def test_attention_model_builds_every_variant_in_both_formats(tmp_path):
    raw = attention_config(yaml.safe_load(TINY_CONFIG.read_text()))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    # The jobs import the user model by its import path, as a user's package on PYTHONPATH.
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    started = time.perf_counter()
    snakemake(tmp_path, config, env=env)
    TIMINGS["tiny run of the attention user model (--cores 2)"] = time.perf_counter() - started

    artifacts = plan.artifacts(resolve_config(raw), MODEL)
    assert {a.fmt for a in artifacts} == {"ptl", "pte"}
    variants = {a.variant.split("-")[0] for a in artifacts}
    assert {"fp32", "int8", "int8_pruned"} <= variants
    summary = pd.read_csv(tmp_path / "results/summary.csv").set_index("artifact")
    for artifact in artifacts:
        assert (tmp_path / artifact.path).stat().st_size > 0, artifact.path
        evaluation = files.read_json(tmp_path / artifact.eval_path)
        assert 0 <= evaluation["accuracy"] <= 100, artifact.path
        bench = files.read_json(tmp_path / artifact.bench_path("host"))
        assert bench["latency_ms"]["p50"] > 0, artifact.path
        row = summary.loc[artifact.path]
        assert row["accuracy"] == evaluation["accuracy"]
        assert row["latency_ms_p50"] == bench["latency_ms"]["p50"]
    assert len(summary) == len(artifacts)
