"""quantize.mode (static | dynamic | auto): which int8 variants a model gets (mobileforge.plan),
what its jobs read, and that auto decides by the fused model's MACs by layer kind."""

from __future__ import annotations

import copy

import pytest

from mobileforge import params, plan
from mobileforge.config import ConfigError, resolve_config
from mobileforge.layout import DYNAMIC
from mobileforge.macs import macs_by_kind
from mobileforge.models import build_model
from tests.attention_nets import build as build_vit

L1 = "int8_pruned-l1_unstructured-0.3"
CHANNEL = "int8_pruned-channel-0.3"
#: MAC splits of a linear-heavy model (the tests' attention net) and of a CNN (tinycnn).
VIT = {"conv": 98304, "linear": 1048896, "other": 0}
CNN = {"conv": 5160960, "linear": 4736, "other": 0}


def _config(tiny_raw: dict, mode: str | None, **quantize) -> dict:
    raw = copy.deepcopy(tiny_raw)
    if mode is not None:
        quantize["mode"] = mode
    raw["defaults"]["quantize"].update(quantize)
    return resolve_config(raw)


def _variants(config: dict, auto=plan.undecided) -> set[str]:
    return {a.variant for a in plan.artifacts(config, "alpha", auto)}


def test_auto_is_the_default_and_static_and_dynamic_build_one_unpruned_int8(tiny_raw):
    assert resolve_config(tiny_raw)["models"]["alpha"]["quantize"]["mode"] == "auto"
    static = _config(tiny_raw, "static")
    assert plan.int8_variants(static, "alpha", lambda model: True) == ["int8", L1, CHANNEL]
    dynamic = _config(tiny_raw, "dynamic")
    assert plan.int8_variants(dynamic, "alpha") == [DYNAMIC, L1, CHANNEL]
    # The l1 point prunes int8's weights: int8 is still calibrated for it, but not built.
    assert plan.calibrated_variants(dynamic, "alpha") == ["int8", CHANNEL]
    assert "int8" not in _variants(dynamic)
    no_l1 = _config(tiny_raw, "dynamic")
    no_l1["models"]["alpha"]["prune"]["method"] = ["channel"]
    assert plan.calibrated_variants(no_l1, "alpha") == [CHANNEL]
    # ... yet int8_dynamic's budget ranks layers by int8's sensitivity.
    assert "results/alpha/sensitivity/int8.ptl.x86.json" in plan.sensitivities(no_l1, "alpha")
    with pytest.raises(ConfigError, match="mode"):
        _config(tiny_raw, "sometimes")


def test_auto_adds_int8_dynamic_where_linear_layers_hold_the_share(tiny_raw):
    config = _config(tiny_raw, "auto")
    assert plan.auto_decides(config, "alpha")
    assert plan.dynamic_pays(config, "alpha", VIT) and not plan.dynamic_pays(config, "alpha", CNN)
    assert _variants(config) == {"fp32", "int8", L1, CHANNEL}  # before the model is fused
    decided = _variants(config, lambda model: plan.dynamic_pays(config, model, VIT))
    assert decided == {"fp32", "int8", DYNAMIC, L1, CHANNEL}
    assert _variants(config, lambda model: plan.dynamic_pays(config, model, CNN)) == _variants(
        config
    )
    strict = _config(tiny_raw, "auto", dynamic_min_share=0.99)
    assert not plan.dynamic_pays(strict, "alpha", VIT)
    # Without int8 configured nothing waits for the decision.
    only_fp32 = copy.deepcopy(config)
    only_fp32["variants"] = ["fp32"]
    assert not plan.auto_decides(only_fp32, "alpha")
    assert not plan.auto_decides(_config(tiny_raw, "static"), "alpha")


def test_auto_artifacts_are_the_dynamic_ones_on_cpu_backends_only(tiny_raw):
    raw = copy.deepcopy(tiny_raw)
    raw["backends"] = {"ptl": ["cpu", "vulkan"], "pte": ["xnnpack", "vulkan"]}
    config = resolve_config(raw)
    found = plan.auto_artifacts(config, "alpha", lambda model: True)
    assert {(a.fmt, a.backend, a.engine) for a in found} == {
        ("ptl", "cpu", "x86"),
        ("pte", "xnnpack", None),
    }
    assert {a.variant for a in found} == {DYNAMIC}
    assert plan.auto_artifacts(config, "alpha", plan.undecided) == []
    assert all(a in plan.compared_artifacts(config, "alpha", "host", lambda m: True) for a in found)


def test_int8_dynamic_quantizes_the_fused_model_ranked_by_int8_and_mode_keys_rerun_nothing(
    tiny_raw,
):
    config = _config(tiny_raw, "dynamic")
    inputs = plan.int8_inputs(config, "alpha", DYNAMIC, "pte", "xnnpack")
    assert inputs["fused"] == "results/alpha/fused.pt"
    assert inputs["sensitivity"] == "results/alpha/sensitivity/int8.pte.xnnpack.json"
    assert plan.calibration_of(config, "alpha", DYNAMIC) == DYNAMIC
    exported = plan.pte_export_inputs(config, "alpha", DYNAMIC, "xnnpack")
    assert exported["program"] == f"results/alpha/pte/{DYNAMIC}.xnnpack.pt2"
    assert "data" not in exported  # nothing pruned at export
    assert params.unstructured_prune(config, "alpha", DYNAMIC) is None
    # The mode decides which variants exist, not how one is calibrated.
    assert params.quantize(config, "alpha", "ptl") == params.quantize(
        _config(tiny_raw, "static", dynamic_min_share=0.5), "alpha", "ptl"
    )


def test_macs_by_kind_split_a_cnn_from_a_transformer():
    cnn = macs_by_kind(build_model("tinycnn", 10, {"width": 8}), [1, 3, 32, 32])
    vit = macs_by_kind(build_vit(), [1, 3, 32, 32])
    assert cnn["conv"] > 0 and plan.linear_share(cnn) < 0.01  # only its classifier is linear
    assert plan.linear_share(vit) > 0.9  # qkv, proj, MLP and the attention matmuls
    assert plan.linear_share({"conv": 0, "linear": 0, "other": 0}) == 0.0


#: A run of the tests' attention model alone, in quantize.mode auto (the default).
ATTENTION_RUN = {
    "defaults": {
        "input_shape": [1, 3, 16, 16],
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "seed": 0, "threads": 1},
        "quantize": {"calibration_batches": 2, "batch_size": 16},
    },
    "models": {"vit": {"arch": "tests.attention_nets:build", "kwargs": {"dim": 16, "heads": 2}}},
    "dataset": {"name": "shapes", "train_size": 256, "calib_size": 64, "eval_size": 64},
    "variants": ["fp32", "int8"],
    "formats": ["ptl", "pte"],
    "devices": {"host": {"kind": "host", "threads": 1}},
    "benchmark": {"warmup": 1, "iterations": 5, "repeats": 2},
    "compare": {"rounds": 5, "runs_per_turn": 3, "max_batches": 1},
}


@pytest.mark.slow
def test_auto_builds_int8_dynamic_of_an_attention_model_in_both_formats(tmp_path):
    import json

    import pandas as pd
    import yaml

    from tests.conftest import snakemake
    from tests.workflow_helpers import planned_outputs

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(ATTENTION_RUN))
    # Before the model is fused the plan holds its static artifacts and the checkpoint only.
    planned = planned_outputs(tmp_path, config)
    assert "results/vit/pte/int8.xnnpack.pte" in planned
    assert not [path for path in planned if DYNAMIC in path]
    snakemake(tmp_path, config)
    results = tmp_path / "results/vit"
    assert (
        plan.linear_share(json.loads((results / "fused.pt.json").read_text())["macs_by_kind"]) > 0.5
    )
    frame = pd.read_csv(tmp_path / "results/summary.csv")
    dynamic = frame[frame["variant"] == DYNAMIC]
    assert set(dynamic["format"]) == {"ptl", "pte"} and dynamic["latency_ms_p50"].notna().all()
    assert dynamic["accuracy"].notna().all()
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
    # Nothing left to do: the checkpoint's decision is read back, not redone.
    assert planned_outputs(tmp_path, config) == set()


def test_dynamic_mode_refuses_a_backend_without_a_dynamic_recipe(tiny_raw):
    raw = copy.deepcopy(tiny_raw)
    raw["defaults"]["quantize"]["mode"] = "dynamic"
    raw["backends"] = {"ptl": ["cpu"], "pte": ["xnnpack", "vulkan"]}
    with pytest.raises(ConfigError, match=r"models.alpha.quantize.mode.*'vulkan'"):
        resolve_config(raw)
    raw["backends"]["pte"] = ["xnnpack"]
    assert resolve_config(raw)["models"]["alpha"]["quantize"]["mode"] == "dynamic"
