"""Configuration: schema validation, defaults, per-model deep merge and semantic checks.

Imported by the Snakefile while the DAG is built, so it must stay torch-free and fast. Every
problem is reported as a :class:`ConfigError` naming the key path and the reason in one line;
the workflow prints that line and stops before any job starts.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from mobileforge import layout
from mobileforge.models import ZOO, is_import_path
from mobileforge.prune.search import SEARCH, Search

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
# The int8 kernel library a device runs, by kind: ARM phones run QNNPACK, an x86 host fbgemm/oneDNN.
DEFAULT_ENGINE = {"host": "x86", "adb": "qnnpack"}
# Which artifact backends each device kind can execute (intersected with the configured ones).
RUNNABLE_BACKENDS = {
    "host": {"ptl": ("cpu",), "pte": ("xnnpack",)},
    "adb": {"ptl": ("cpu", "vulkan"), "pte": ("xnnpack", "vulkan")},  # .pte needs pte_runner
}


# The dataset keys each source uses: the resolved spec keeps only these, so a default meant for
# another source never reaches the loader nor triggers a rebuild when edited.
DATASET_KEYS = {
    "shapes": (
        "name",
        "seed",
        "difficulty",
        "num_classes",
        "train_size",
        "calib_size",
        "eval_size",
    ),
    "folder": ("name", "path", "seed", "calib_fraction", "eval_fraction"),
    "tensors": ("name", "path", "seed", "calib_fraction", "eval_fraction"),
}
# Folders of results/ that are not models.
RESERVED_NAMES = ("data", "report", "peak")

#: ``train.holdout: auto`` where a model builds channel points: the share of its train split held
#: back to score their recovery fine-tunes on (see :func:`_resolve_holdout`).
AUTO_HOLDOUT = 0.1


class ConfigError(ValueError):
    """Invalid configuration: ``key`` is a dotted path into the config, ``reason`` says why."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}" if key else reason)


def load_schema(path: str | os.PathLike[str] = SCHEMA_PATH) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` over ``base`` (dicts merge, anything else replaces)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def canonical(value: Any) -> Any:
    """Key-sorted copy of nested dicts, so a Snakemake ``params:`` value has one stable form."""
    if isinstance(value, Mapping):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [canonical(item) for item in value]
    return value


def resolve_config(
    raw: Mapping[str, Any], base_dir: str | os.PathLike[str] = "."
) -> dict[str, Any]:
    """Validate ``raw`` and return the resolved config.

    The result has defaults filled in at every level, ``models[name]`` replaced by the merged and
    validated settings of that model, and every device given its ``engine``, ``warmup``,
    ``iterations``, ``repeats`` and ``cooldown``. Relative paths (checkpoint, dataset path) are
    checked against ``base_dir``.
    """
    schema = load_schema()
    config = copy.deepcopy(dict(raw))
    _validate(config, schema, prefix="")

    defaults = config.get("defaults", {})
    base = Path(base_dir)
    dataset = config["dataset"] = _resolve_dataset(config["dataset"], base)

    model_schema = {"$ref": "#/$defs/model_settings", "$defs": schema["$defs"]}
    models: dict[str, Any] = {}
    for name, own in config["models"].items():
        if name in RESERVED_NAMES:
            raise ConfigError(f"models.{name}", f"{name!r} is reserved for results/{name}/")
        settings = deep_merge(defaults, own)
        _validate(settings, model_schema, prefix=f"models.{name}")
        _check_arch(name, settings["arch"])
        if "checkpoint" in settings and not (base / settings["checkpoint"]).is_file():
            raise ConfigError(
                f"models.{name}.checkpoint",
                f"file {settings['checkpoint']!r} does not exist (relative to {base.resolve()})",
            )
        if dataset["name"] == "shapes":
            settings.setdefault("num_classes", dataset["num_classes"])
        _check_dynamic(name, settings, config)
        _check_search(name, settings["prune"])
        _resolve_holdout(settings, config["variants"])
        models[name] = settings
    config["models"] = models

    for name, device in config["devices"].items():
        device.setdefault("engine", DEFAULT_ENGINE[device["kind"]])
        for key in ("warmup", "iterations", "repeats", "cooldown"):
            device.setdefault(key, copy.deepcopy(config["benchmark"][key]))
        if device["kind"] == "host":
            device.pop("remote_dir", None)  # a phone's folder: not a host setting
        if device["kind"] == "adb":
            for key in ("serial", "runner"):
                if key not in device:
                    raise ConfigError(f"devices.{name}.{key}", "required for an adb device")
            for key in ("runner", "pte_runner"):
                if key in device and not (base / device[key]).is_file():
                    raise ConfigError(f"devices.{name}.{key}", f"{device[key]!r} does not exist")
    return config


def _resolve_dataset(dataset: dict[str, Any], base: Path) -> dict[str, Any]:
    name = dataset["name"]
    if name in ("folder", "tensors"):
        if "path" not in dataset:
            raise ConfigError("dataset.path", f"required when dataset.name is {name!r}")
        if not (base / dataset["path"]).exists():
            raise ConfigError("dataset.path", f"{dataset['path']!r} does not exist")
    return {key: dataset[key] for key in DATASET_KEYS[name] if key in dataset}


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and resolve a YAML config file (paths in it are relative to the working directory)."""
    with open(path) as handle:
        raw = yaml.safe_load(handle) or {}
    if not isinstance(raw, dict):
        raise ConfigError("", f"{path}: top level must be a mapping")
    return resolve_config(raw)


def _check_dynamic(model: str, settings: dict[str, Any], config: dict[str, Any]) -> None:
    """``quantize.mode: dynamic`` replaces ``int8`` by ``int8_dynamic``, which exists for CPU
    backends only: another configured int8 backend would silently get no unpruned int8."""
    if settings["quantize"]["mode"] != "dynamic" or "int8" not in config["variants"]:
        return
    dynamic = layout.DYNAMIC_BACKENDS
    for fmt in config["formats"]:
        for backend in config["backends"][fmt]:
            if backend in layout.INT8_BACKENDS[fmt] and backend not in dynamic[fmt]:
                have = ", ".join(f"{f} {b}" for f, names in dynamic.items() for b in names)
                raise ConfigError(
                    f"models.{model}.quantize.mode",
                    f"dynamic: backends.{fmt} {backend!r} has no dynamic int8 recipe (only "
                    f"{have}); use mode auto or static for this model, or drop the backend",
                )


def _resolve_holdout(settings: dict[str, Any], variants: list[str]) -> None:
    """``train.holdout: auto`` as a number: :data:`AUTO_HOLDOUT` where the model builds channel
    points (their fine-tune stops on the held-back score), else 0. Holding back costs a model
    trained for few epochs a lot (MobileNetV2 x0.5 in the default config: 93.4 -> 82.1 % top-1
    with a tenth held back), so a model nothing fine-tunes keeps all of its data."""
    train = settings["train"]
    if train["holdout"] != "auto":
        return
    methods = settings["prune"]["method"]
    methods = [methods] if isinstance(methods, str) else methods
    channel_points = "int8_pruned" in variants and "channel" in methods
    train["holdout"] = AUTO_HOLDOUT if channel_points else 0.0


def _check_search(model: str, prune: dict[str, Any]) -> None:
    """``prune.amount: search`` bisects channel amounts on the grid of ``prune.search``."""
    if prune["amount"] != SEARCH:
        return
    methods = prune["method"] if isinstance(prune["method"], list) else [prune["method"]]
    if methods != ["channel"]:
        raise ConfigError(
            f"models.{model}.prune.method",
            f"{prune['method']!r}: amount search bisects channel amounts only; set method: "
            "channel, or give the amounts as a list",
        )
    if problem := Search.of(prune["search"]).problem():
        raise ConfigError(f"models.{model}.prune.search", problem)


def _check_arch(model: str, arch: str) -> None:
    key = f"models.{model}.arch"
    if arch in ZOO:
        return
    if not is_import_path(arch):
        raise ConfigError(
            key,
            f"unknown arch {arch!r}: expected one of {', '.join(sorted(ZOO))} "
            "or an import path 'package.module:callable'",
        )
    # Look the top-level package up without importing the user's module (it may import torch).
    top = arch.split(":", 1)[0].split(".", 1)[0]
    if importlib.util.find_spec(top) is None:
        raise ConfigError(key, f"cannot import {top!r} (from {arch!r}): is it on PYTHONPATH?")


def _validate(instance: dict[str, Any], schema: dict[str, Any], prefix: str) -> None:
    validator = _DefaultFillingValidator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda err: list(err.absolute_path))
    if errors:
        error = errors[0]
        while error.validator == "oneOf" and error.context:
            # "a number or a list of numbers": report what is wrong with the branch that has
            # the instance's shape (a type mismatch is only the other branch talking).
            shaped = [e for e in error.context if e.validator != "type"] or error.context
            error = max(shaped, key=lambda e: len(e.absolute_path))
        parts = [prefix] if prefix else []
        parts += [str(part) for part in error.absolute_path]
        if "propertyNames" in error.absolute_schema_path:
            parts.append(str(error.instance))  # the offending name itself
        raise ConfigError(".".join(parts), _describe(error))


def _describe(error: jsonschema.ValidationError) -> str:
    if "propertyNames" in error.absolute_schema_path:
        return f"name {error.instance!r} must match [A-Za-z0-9_-]+ (it becomes part of file paths)"
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown key")
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    if error.validator == "exclusiveMaximum":
        return f"{error.instance!r} must be < {error.validator_value}"
    if error.validator == "exclusiveMinimum":
        return f"{error.instance!r} must be > {error.validator_value}"
    return error.message


def _extend_with_default(validator_class: type) -> type:
    """A validator that fills in ``default`` values as it validates, like Snakemake's."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(
        validator: Any, properties: dict[str, Any], instance: Any, schema: dict[str, Any]
    ) -> Iterator[jsonschema.ValidationError]:
        if isinstance(instance, dict):
            for prop, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(prop, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultFillingValidator = _extend_with_default(jsonschema.Draft202012Validator)
