"""What each job depends on of the config: the ``params:`` of every rule, as plain builtins.

Snakemake reruns a job when its params change, so a param must carry exactly what the job's
output depends on: a setting left out would not rerun it, one put in would rerun it for
nothing. Those choices are domain rules (the budget does not change a sensitivity ranking,
a ``.pte`` quantizer has no 7-bit mode, a comparison needs no benchmark settings) and live
here, where tests can hold them; ``rules/common.smk`` only hands each job its wildcards.

Each function takes the resolved config and the job's wildcard values and returns a
key-sorted value (:func:`mobileforge.config.canonical`), so a param has one stable form.
Torch-free: called while the DAG is built.
"""

from __future__ import annotations

from typing import Any

from mobileforge import plan
from mobileforge.bench import peak as peak_measurement
from mobileforge.config import canonical

#: Keys of the quantize block that decide which layers stay fp32, not how a layer is
#: calibrated: a sensitivity ranking does not depend on them (editing the budget must not
#: rerun it).
BUDGET_KEYS = ("accuracy_budget", "max_fp32_layers")
#: Quantize keys a .pte quantizer does not read: PT2E has no 7-bit activation mode.
FX_ONLY_KEYS = ("reduce_range",)
#: Quantize keys that decide which int8 variants exist (``plan.int8_variants``), not how one is
#: calibrated: an int8 job's recipe comes from its variant (editing the mode must not rerun the
#: variants it keeps).
MODE_KEYS = ("mode", "dynamic_min_share")
#: What a comparison depends on of its device: where it runs and with how many threads; not
#: the benchmark settings (warmup, iterations, repeats, cooldown) nor the runners' paths
#: (those are inputs).
COMPARE_DEVICE_KEYS = ("kind", "threads", "engine", "serial", "adb_host", "adb_port", "remote_dir")
#: The training settings a channel point's fine-tune reuses.
FINETUNE_TRAIN_KEYS = ("batch_size", "momentum", "weight_decay", "seed", "holdout")


def train(config: dict[str, Any], model: str) -> dict[str, Any]:
    settings = config["models"][model]
    train_settings = dict(settings["train"])
    if not train_settings["holdout"]:
        # Nothing held back is how training was before train.holdout: a run made then keeps
        # its params, and its checkpoint.
        del train_settings["holdout"]
    return canonical(
        {
            "model": model,
            "arch": settings["arch"],
            "kwargs": settings["kwargs"],
            "num_classes": settings.get("num_classes"),
            "input_shape": settings["input_shape"],
            "train": train_settings,
            "checkpoint": settings.get("checkpoint"),
        }
    )


def fuse(config: dict[str, Any], model: str) -> dict[str, Any]:
    return canonical(config["models"][model]["fuse"])


def quantize(config: dict[str, Any], model: str, fmt: str, ranking: bool = False) -> dict[str, Any]:
    """The quantize settings an int8 job of ``fmt`` reads; ``ranking``: those a sensitivity
    job reads (no budget keys)."""
    settings = dict(config["models"][model]["quantize"])
    dropped = (*MODE_KEYS, *(BUDGET_KEYS if ranking else ()))
    for key in (*dropped, *(FX_ONLY_KEYS if fmt == "pte" else ())):
        settings.pop(key, None)
    return canonical(settings)


def unstructured_prune(config: dict[str, Any], model: str, variant: str) -> dict[str, Any] | None:
    """What an l1-unstructured point prunes (method, amount, the budget it stays within);
    None for a variant that prunes no int8 weights (fp32, int8, channel points)."""
    if plan.calibration_of(config, model, variant) in (None, variant):
        return None
    point = plan.prune_point(config, model, variant)
    return canonical(
        {
            "method": point.method,
            "amount": point.amount,
            "accuracy_budget": config["selection"]["accuracy_budget"],
        }
    )


def channel_prune(config: dict[str, Any], model: str, point: str) -> dict[str, Any]:
    """What a channel point (``channel-<amount>``) prunes and how it fine-tunes: the fine-tune
    stops within the selection's accuracy budget, so that is part of it."""
    settings = config["models"][model]
    found = plan.prune_point(config, model, f"int8_pruned-{point}")
    prune, train_settings = settings["prune"], settings["train"]
    return canonical(
        {
            "method": found.method,
            "amount": found.amount,
            "scope": prune["scope"],
            "round_to": prune["round_to"],
            "steps": prune["steps"],
            "finetune": prune["finetune"],
            "accuracy_budget": config["selection"]["accuracy_budget"],
            "train": {key: train_settings[key] for key in FINETUNE_TRAIN_KEYS},
        }
    )


def device(config: dict[str, Any], name: str, fmt: str) -> dict[str, Any]:
    """A device's settings for a benchmark of ``fmt``: only that format's runner, so a new
    executor_runner reruns the .pte benchmarks only."""
    settings = dict(config["devices"][name])
    for other, key in plan.RUNNER_KEYS.items():
        if other != fmt:
            settings.pop(key, None)
    return canonical(settings)


def bench_operations(config: dict[str, Any]) -> dict[str, Any]:
    """How long to wait for a phone and how often to retry: they change no measurement (the
    rule hands them over as a derived param, out of the rerun trigger)."""
    return canonical(
        {"retries": config["benchmark"]["retries"], "timeouts": config["benchmark"]["timeouts"]}
    )


def profile(config: dict[str, Any]) -> dict[str, Any]:
    """What a profile's numbers depend on: its runs and warm-up (not ``enabled``, which only
    decides whether the default target asks for it)."""
    settings = config["profile"]
    return {"runs": settings["runs"], "warmup": settings["warmup"]}


def peak(config: dict[str, Any], name: str) -> dict[str, Any]:
    """What the peak measurement depends on: the device's runtime threads and int8 engine, the
    GEMM shape and its repeats."""
    settings = config["devices"][name]
    return {
        "threads": settings["threads"],
        "engine": settings["engine"],
        "shape": list(peak_measurement.GEMM_SHAPE),
        "repeats": peak_measurement.REPEATS,
    }


def compare(config: dict[str, Any], name: str) -> dict[str, Any]:
    settings = config["devices"][name]
    return canonical(
        {
            "device": {key: settings[key] for key in COMPARE_DEVICE_KEYS if key in settings},
            **config["compare"],
        }
    )


def compare_runners(config: dict[str, Any], name: str) -> dict[str, str]:
    """The runner of each format on a phone, by format."""
    settings = config["devices"][name]
    return {
        fmt: plan.runner_of(settings, fmt)
        for fmt in plan.RUNNER_KEYS
        if plan.RUNNER_KEYS[fmt] in settings
    }


def summary_devices(config: dict[str, Any]) -> dict[str, Any]:
    """What the summary reads of each device: its kind and int8 engine."""
    return canonical(
        {
            name: {"kind": settings["kind"], "engine": settings["engine"]}
            for name, settings in config["devices"].items()
        }
    )


def figures(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every figure the plots job draws: kind, device, model, path."""
    return [
        {"kind": f.kind, "device": f.device, "model": f.model, "path": f.path}
        for f in plan.figures(config)
    ]


def profile_pages(config: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The profile page of each model that has profiles (model -> Markdown and HTML path): the
    summary links them."""
    return {
        model: plan.profile_page_paths(model)
        for model in config["models"]
        if plan.profile_paths(config, model)
    }


def prune_search_step(config: dict[str, Any], model: str, point: str) -> dict[str, Any]:
    """What the verdict on one searched amount depends on: the amount, the budget, and the grid
    and bounds (what is left after it); not max_points (how many verdicts there will be)."""
    found = plan.prune_point(config, model, f"int8_pruned-{point}")
    settings = config["models"][model]["prune"]["search"]
    return canonical(
        {
            "amount": found.amount,
            "accuracy_budget": config["selection"]["accuracy_budget"],
            "search": {key: settings[key] for key in ("low", "high", "step")},
        }
    )


def prune_search(config: dict[str, Any], model: str) -> dict[str, Any]:
    """What a search's outcome depends on: its settings and the budget."""
    return canonical(
        {
            "accuracy_budget": config["selection"]["accuracy_budget"],
            "search": config["models"][model]["prune"]["search"],
        }
    )
