"""Config validation: defaults filled, per-model merge, and one clear line per mistake."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from mobileforge import params
from mobileforge.config import ConfigError, canonical, deep_merge, resolve_config


def test_default_config_resolves_with_defaults_filled(default_raw):
    config = resolve_config(default_raw)
    mobilenet = config["models"]["mobilenet_v2"]
    assert mobilenet["kwargs"]["width_mult"] == 0.5
    assert mobilenet["prune"] == {
        "amount": 0.3,
        "method": "l1_unstructured",
        "scope": "layer",
        "round_to": 8,
        "steps": 1,
        "finetune": {
            "epochs": 2,
            "patience": 2,
            "int8_margin": 0.5,
            "step_epochs": 1,
            "lr": 0.01,
            "temperature": 2.0,
            "distillation": 0.5,
        },
        "search": {"low": 0.3, "high": 0.9, "step": 0.05, "max_points": 4},
    }
    # train.holdout auto: the default config's models have no channel points, so nothing is
    # held back (a tenth less data cost its MobileNetV2 11 points of top-1 in 3 epochs).
    assert mobilenet["train"]["holdout"] == 0.0
    assert mobilenet["num_classes"] == config["dataset"]["num_classes"]
    assert config["devices"]["host"]["engine"] == "x86"
    assert config["devices"]["host"]["iterations"] == config["benchmark"]["iterations"]
    assert config["backends"] == {"ptl": ["cpu"], "pte": ["xnnpack"]}


def test_dataset_difficulty_reaches_shapes_only(tiny_raw):
    """The shapes spec carries its preset (standard unless set), so changing it rebuilds the
    dataset; a user dataset's spec never carries it."""
    assert resolve_config(tiny_raw)["dataset"]["difficulty"] == "standard"
    hard = _mutate(tiny_raw, "dataset.difficulty", "hard")
    assert resolve_config(hard)["dataset"]["difficulty"] == "hard"
    folder = _mutate(hard, "dataset", {"name": "folder", "path": ".", "difficulty": "hard"})
    assert "difficulty" not in resolve_config(folder)["dataset"]


def test_model_settings_override_defaults_deeply(tiny_raw):
    tiny_raw["models"]["beta"] = {"arch": "tinycnn", "prune": {"amount": 0.5}}
    config = resolve_config(tiny_raw)
    assert config["models"]["beta"]["prune"]["amount"] == 0.5
    assert config["models"]["alpha"]["prune"]["amount"] == 0.3
    # The sibling keys of an overridden dict survive the merge.
    assert config["models"]["beta"]["prune"]["method"] == ["l1_unstructured", "channel"]
    assert config["models"]["beta"]["train"]["batch_size"] == 32


def test_holdout_auto_holds_back_only_for_models_with_channel_points(tiny_raw):
    tiny_raw["models"]["l1"] = {"arch": "tinycnn", "prune": {"method": "l1_unstructured"}}
    tiny_raw["models"]["own"] = {"arch": "tinycnn", "train": {"holdout": 0.2}}
    config = resolve_config(tiny_raw)
    holdout = {name: settings["train"]["holdout"] for name, settings in config["models"].items()}
    assert holdout == {"alpha": 0.1, "l1": 0.0, "own": 0.2}  # alpha has a channel point
    # Nothing held back leaves the train params as they were before the key existed.
    assert "holdout" not in params.train(config, "l1")["train"]
    assert params.train(config, "alpha")["train"]["holdout"] == 0.1
    tiny_raw["variants"] = ["fp32", "int8"]  # no pruned variant: no channel point to recover
    assert resolve_config(tiny_raw)["models"]["alpha"]["train"]["holdout"] == 0.0


def test_adb_device_gets_qnnpack_engine_unless_overridden(tiny_raw, tmp_path):
    (tmp_path / "speed_benchmark_torch").write_bytes(b"")
    tiny_raw["devices"]["phone"] = {
        "kind": "adb",
        "serial": "X1",
        "runner": "speed_benchmark_torch",
    }
    tiny_raw["devices"]["host2"] = {"kind": "host", "engine": "qnnpack"}
    config = resolve_config(tiny_raw, base_dir=tmp_path)
    assert config["devices"]["phone"]["engine"] == "qnnpack"
    assert config["devices"]["host2"]["engine"] == "qnnpack"


def test_benchmark_defaults_reach_every_device_and_a_device_may_override(tiny_raw):
    tiny_raw["benchmark"]["cooldown"] = {"below_c": 45}
    tiny_raw["devices"]["host2"]["cooldown"] = {"pause_s": 2}
    tiny_raw["devices"]["host2"]["repeats"] = 5
    config = resolve_config(tiny_raw)
    host, host2 = config["devices"]["host"], config["devices"]["host2"]
    assert host["repeats"] == config["benchmark"]["repeats"] == 2
    assert host["cooldown"] == {"pause_s": 0, "below_c": 45, "max_wait_s": 300, "poll_s": 5,
                                "zones": ""}  # fmt: skip
    # A device's cooldown replaces the default one; its unset keys take their defaults.
    assert host2["cooldown"] == {"pause_s": 2, "max_wait_s": 300, "poll_s": 5, "zones": ""}
    assert host2["repeats"] == 5
    assert config["benchmark"]["retries"] == 2 and config["benchmark"]["unstable_cv"] == 0.05
    assert config["benchmark"]["timeouts"] == {"command_s": 30, "run_s": 600,
                                               "wait_for_device_s": 60}  # fmt: skip


def _mutate(raw: dict, path: str, value) -> dict:
    raw = copy.deepcopy(raw)
    node = raw
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return raw


@pytest.mark.parametrize(
    ("path", "value", "key", "words"),
    [
        ("models.alpha.arch", "alexnet", "models.alpha.arch", "unknown arch 'alexnet'"),
        ("models.alpha.arch", "nosuchpkg_xyz.nets:build", "models.alpha.arch", "cannot import"),
        ("models.alpha.prune", {"amount": 1.0}, "models.alpha.prune.amount", "must be < 1"),
        ("models.alpha.prune", {"amount": -0.1}, "models.alpha.prune.amount", "minimum"),
        # A sweep: the failing point is named by its place in the list.
        (
            "models.alpha.prune",
            {"amount": [0.3, 1.5]},
            "models.alpha.prune.amount.1",
            "must be < 1",
        ),
        (
            "models.alpha.prune",
            {"method": ["channel", "ln"]},
            "models.alpha.prune.method.1",
            "'ln' is not one of",
        ),  # fmt: skip
        # Recovery to the budget and gradual pruning.
        ("models.alpha.prune.steps", 0, "models.alpha.prune.steps", "minimum"),
        (
            "models.alpha.prune.finetune",
            {"patience": 0},
            "models.alpha.prune.finetune.patience",
            "minimum",
        ),  # fmt: skip
        (
            "models.alpha.prune.finetune",
            {"int8_margin": -1},
            "models.alpha.prune.finetune.int8_margin",
            "minimum",
        ),  # fmt: skip
        (
            "models.alpha.prune.finetune",
            {"patiense": 2},
            "models.alpha.prune.finetune",
            "unknown key",
        ),  # fmt: skip
        ("models.alpha.train.holdout", 0.5, "models.alpha.train.holdout", "0.5"),
        ("models.alpha.train.holdout", -0.1, "models.alpha.train.holdout", "minimum"),
        ("models.alpha.train.holdout", "some", "models.alpha.train.holdout", "'auto' was expected"),
        ("models.bad/name", {"arch": "tinycnn"}, "models.bad/name", "[A-Za-z0-9_-]+"),
        ("devices.my phone", {"kind": "host"}, "devices.my phone", "[A-Za-z0-9_-]+"),
        ("backends.ptl", ["opengl"], "backends.ptl.0", "'opengl' is not one of"),
        ("devices.host.kind", "toaster", "devices.host.kind", "'toaster' is not one of"),
        (
            "dataset.difficulty",
            "extreme",
            "dataset.difficulty",
            "'extreme' is not one of standard, hard",
        ),  # fmt: skip
        ("models.alpha.checkpoint", "missing.pt", "models.alpha.checkpoint", "does not exist"),
        ("models.alpha.tarin", {}, "models.alpha", "unknown key"),
        ("devices.phone", {"kind": "adb", "runner": "x"}, "devices.phone.serial", "required"),
        ("models.data", {"arch": "tinycnn"}, "models.data", "reserved"),
        ("benchmark.repeats", 0, "benchmark.repeats", "minimum"),
        ("benchmark.cooldown", {"below": 40}, "benchmark.cooldown", "unknown key"),
        ("benchmark.timeouts", {"run_s": 0}, "benchmark.timeouts.run_s", "0"),
        ("devices.host.cooldown", {"pause_s": -1}, "devices.host.cooldown.pause_s", "minimum"),
        (
            "devices.phone",
            {"kind": "adb", "serial": "S", "runner": "nope"},
            "devices.phone.runner",
            "does not exist",
        ),  # fmt: skip
    ],
)
def test_bad_config_names_key_and_reason(tiny_raw, path, value, key, words):
    with pytest.raises(ConfigError) as caught:
        resolve_config(_mutate(tiny_raw, path, value))
    assert caught.value.key == key
    assert words in caught.value.reason


def test_bad_config_stops_snakemake_with_one_line(repo, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(
        (repo / "tests/configs/tiny.yaml")
        .read_text()
        .replace("arch: tinycnn, kwargs: {width: 8}", "arch: alexnet")
    )
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-n",
         "--configfile", str(config), "--cores", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("mobileforge:")]
    assert len(lines) == 1
    assert lines[0].startswith("mobileforge: invalid config: models.alpha.arch: unknown arch")
    assert "tinycnn" in lines[0] and "'package.module:callable'" in lines[0]
    assert str(config) in lines[0]  # the file to fix
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists()


def test_deep_merge_does_not_mutate_inputs():
    base = {"a": {"b": 1, "c": 2}}
    merged = deep_merge(base, {"a": {"b": 3}})
    assert merged == {"a": {"b": 3, "c": 2}}
    assert base == {"a": {"b": 1, "c": 2}}


def test_canonical_orders_keys_recursively():
    assert list(canonical({"b": 1, "a": {"d": 1, "c": 2}})) == ["a", "b"]
    assert list(canonical({"a": {"d": 1, "c": 2}})["a"]) == ["c", "d"]
