"""What each job depends on of the config (mobileforge.params) and what it reads
(mobileforge.plan): the domain rules the rules' input and param functions hand over."""

from __future__ import annotations

import copy

from mobileforge import params, plan
from mobileforge.config import resolve_config

L1 = "int8_pruned-l1_unstructured-0.3"
CHANNEL = "int8_pruned-channel-0.3"


def _with_phone(raw: dict, folder) -> dict:
    raw = copy.deepcopy(raw)
    for runner in ("speed_benchmark_torch", "executor_runner"):
        (folder / runner).write_text("#!/bin/sh\n")
    raw["devices"]["phone"] = {"kind": "adb", "serial": "emulator-5554", "threads": 1,
                               "runner": "speed_benchmark_torch",
                               "pte_runner": "executor_runner"}  # fmt: skip
    return raw


def test_a_sensitivity_ranking_does_not_depend_on_the_budget_and_pte_has_no_reduce_range(
    tiny_raw,
):
    config = resolve_config(tiny_raw)
    ptl, pte = params.quantize(config, "alpha", "ptl"), params.quantize(config, "alpha", "pte")
    ranking = params.quantize(config, "alpha", "ptl", ranking=True)
    assert {"accuracy_budget", "max_fp32_layers", "reduce_range"} <= ptl.keys()
    assert "reduce_range" not in pte and "accuracy_budget" in pte
    assert not set(params.BUDGET_KEYS) & ranking.keys()
    assert {key: ptl[key] for key in ranking} == ranking  # everything else is the int8 job's


def test_each_pte_variant_lowers_the_program_of_its_own_calibration(tiny_raw):
    config = resolve_config(tiny_raw)
    assert plan.calibration_of(config, "alpha", "fp32") is None
    assert plan.calibration_of(config, "alpha", "int8") == "int8"
    assert plan.calibration_of(config, "alpha", CHANNEL) == CHANNEL  # its own calibration
    assert plan.calibration_of(config, "alpha", L1) == "int8"  # prunes int8's weights
    assert plan.pte_export_inputs(config, "alpha", "fp32", "xnnpack") == {
        "fused": "results/alpha/fused.pt"
    }
    channel = plan.pte_export_inputs(config, "alpha", CHANNEL, "xnnpack")
    assert channel["fused"] == "results/alpha/pruned-channel-0.3.pt" and "data" not in channel
    assert channel["program"] == f"results/alpha/pte/{CHANNEL}.xnnpack.pt2"
    l1 = plan.pte_export_inputs(config, "alpha", L1, "xnnpack")
    assert l1["program"] == "results/alpha/pte/int8.xnnpack.pt2"
    assert l1["data"] == plan.dataset_path(config, "alpha")  # for its pruning budget


def test_only_points_that_prune_int8_weights_carry_prune_params(tiny_raw):
    config = resolve_config(tiny_raw)
    for variant in ("fp32", "int8", CHANNEL):
        assert params.unstructured_prune(config, "alpha", variant) is None
    l1 = params.unstructured_prune(config, "alpha", L1)
    assert l1 == {"accuracy_budget": config["selection"]["accuracy_budget"], "amount": 0.3,
                  "method": "l1_unstructured"}  # fmt: skip
    channel = params.channel_prune(config, "alpha", "channel-0.3")
    assert channel["method"] == "channel" and set(channel["train"]) == set(
        params.FINETUNE_TRAIN_KEYS
    )
    # The fine-tune stops within the selection's budget, on the images train.holdout holds
    # back, after prune.steps steps: editing any of them reruns the channel point.
    assert channel["accuracy_budget"] == config["selection"]["accuracy_budget"]
    assert channel["train"]["holdout"] == 0.1 and channel["steps"] == 1
    assert {"patience", "int8_margin", "step_epochs"} <= channel["finetune"].keys()


def test_int8_waits_for_the_ranking_only_with_a_budget(tiny_raw):
    config = resolve_config(tiny_raw)
    assert "sensitivity" in plan.int8_inputs(config, "alpha", "int8", "ptl", "x86")
    tiny_raw["defaults"]["quantize"]["accuracy_budget"] = None
    config = resolve_config(tiny_raw)
    inputs = plan.int8_inputs(config, "alpha", CHANNEL, "pte", "xnnpack")
    assert inputs == {"fused": "results/alpha/pruned-channel-0.3.pt",
                      "data": plan.dataset_path(config, "alpha")}  # fmt: skip


def test_a_benchmark_depends_on_its_own_format_s_runner_and_a_comparison_on_no_benchmark_setting(
    tiny_raw, tmp_path
):
    config = resolve_config(_with_phone(tiny_raw, tmp_path), base_dir=tmp_path)
    ptl, pte = params.device(config, "phone", "ptl"), params.device(config, "phone", "pte")
    assert "runner" in ptl and "pte_runner" not in ptl
    assert "pte_runner" in pte and "runner" not in pte
    compared = params.compare(config, "phone")
    assert set(compared["device"]) <= set(params.COMPARE_DEVICE_KEYS)
    assert not {"warmup", "iterations", "repeats", "cooldown"} & compared["device"].keys()
    assert params.compare_runners(config, "phone") == {
        "ptl": config["devices"]["phone"]["runner"],
        "pte": config["devices"]["phone"]["pte_runner"],
    }
