# Helpers, config validation, wildcard constraints and input/param functions.
# Parsed on every Snakemake start: keep it torch-free (mobileforge.config and .plan are).
import os
import sys
import time

sys.path.insert(0, workflow.basedir)
# Jobs inherit this: TorchScript serialises class constants in set order, so an unfrozen .ptl
# is only byte-identical across runs when Python's hash seed is fixed.
os.environ.setdefault("PYTHONHASHSEED", "0")

from snakemake.exceptions import WorkflowError

from mobileforge import cpus, layout, plan
from mobileforge.bench import farm
from mobileforge.bench.runstate import RUN_ID_ENV
from mobileforge.bench import peak as peak_measurement  # torch-free at import
from mobileforge.config import ConfigError, canonical, resolve_config
from mobileforge.fingerprint import job_toolchain, stage_names
from mobileforge.versions import installed_executorch_mismatch
from mobileforge.warm import client as warm

# One id per workflow run, inherited by its jobs: they share what they learn about each phone
# (probes, a phone found gone) within the run, not across runs (mobileforge.bench.runstate).
os.environ.setdefault(RUN_ID_ENV, f"{os.getpid()}-{time.time_ns()}")

try:
    MF = resolve_config(config)
except ConfigError as error:
    # One line naming the key and the reason, before any job starts (no traceback).
    sys.exit(f"mobileforge: invalid config: {error}")
if "pte" in MF["formats"] and (problem := installed_executorch_mismatch()):
    sys.exit(f"mobileforge: cannot build .pte artifacts: {problem}")


def _local_cores():
    # The cores this Snakemake process runs jobs on itself, or None when its jobs run on other
    # machines (a cluster executor, where workflow.cores raises, and the job process on a
    # cluster node) or nothing runs (--lint gives no --cores).
    if not workflow.local_exec or workflow.remote_exec:
        return None
    try:
        return workflow.cores or 1
    except WorkflowError:
        return None


def _cores_per_cpu():
    # See mobileforge.cpus: with --cores above this machine's CPUs, each job claims the cores
    # one CPU stands for, so jobs never share a CPU and the longest chain is not stretched.
    if LOCAL_CORES is None:  # a cluster gives each job the CPUs it asks for: nothing to rescale
        return 1
    return cpus.cores_per_cpu(LOCAL_CORES, cpus.available_cpus())


LOCAL_CORES = _local_cores()
CORES_PER_CPU = _cores_per_cpu()
os.environ[cpus.ENV] = str(CORES_PER_CPU)  # jobs turn their claim back into runtime threads
# Jobs run on this machine by this Snakemake hand their work to the run's warm workers
# (mobileforge.warm; MOBILEFORGE_WARM=0 turns them off); elsewhere each runs in its own process.
warm.declare_run(local=LOCAL_CORES is not None)
if CORES_PER_CPU > 1:
    print(
        f"mobileforge: --cores {LOCAL_CORES} on {cpus.available_cpus()} CPUs: each job "
        f"claims {CORES_PER_CPU} cores per runtime thread, so jobs never share a CPU",
        file=sys.stderr,
    )


def _devices_of_kind(kind):
    return [name for name, device in MF["devices"].items() if device["kind"] == kind]


HOST_DEVICES = layout.one_of(_devices_of_kind("host"))
ADB_DEVICES = layout.one_of(_devices_of_kind("adb"))
# One Snakemake resource of capacity 1 per physical phone: N phones run N benchmarks at once,
# two config entries on one phone take turns, and none waits for host cores.
PHONES = farm.phone_resources(MF["devices"])
for _phone in PHONES:
    if _phone not in workflow.global_resources:  # a --resources value given by the user wins
        workflow.register_resource(_phone, 1)


# Models and devices are the config's; the other wildcards' patterns are mobileforge.layout's.
wildcard_constraints:
    model=layout.one_of(list(MF["models"])),
    device=layout.one_of(list(MF["devices"])),
    **layout.PATTERNS,


def toolchain(stage):
    # A rule's rerun trigger for its code and packages (mobileforge.fingerprint): the rule
    # running a stage (mobileforge.stages.RULES) passes params: toolchain=toolchain("<stage>").
    # Computed once per stage, lazily; each job gets its own view (a .ptl job does not depend on
    # executorch).
    if stage not in stage_names():
        raise WorkflowError(f"toolchain({stage!r}): mobileforge.stages.STAGES has no such stage")

    def get_toolchain(wildcards):
        return job_toolchain(stage, dict(wildcards.items()))

    return get_toolchain


def model_settings(wildcards):
    return MF["models"][wildcards.model]


def get_dataset(wildcards):
    return plan.dataset_path(MF, wildcards.model)


def get_train_params(wildcards):
    settings = model_settings(wildcards)
    return canonical(
        {
            "model": wildcards.model,
            "arch": settings["arch"],
            "kwargs": settings["kwargs"],
            "num_classes": settings.get("num_classes"),
            "input_shape": settings["input_shape"],
            "train": settings["train"],
            "checkpoint": settings.get("checkpoint"),
        }
    )


def get_train_threads(wildcards):
    return model_settings(wildcards)["train"]["threads"] * CORES_PER_CPU


def get_train_inputs(wildcards):
    inputs = {"data": get_dataset(wildcards)}
    user_checkpoint = model_settings(wildcards).get("checkpoint")
    if user_checkpoint:
        inputs["user_checkpoint"] = user_checkpoint
    return inputs


def get_fuse_params(wildcards):
    return canonical(model_settings(wildcards)["fuse"])


# Keys of the quantize block that decide which layers stay fp32, not how a layer is calibrated:
# sensitivity does not depend on them (editing the budget must not rerun it).
BUDGET_KEYS = ("accuracy_budget", "max_fp32_layers")


def _quantize_settings(wildcards, fmt, keys_out=()):
    # .pte quantizers have no 7-bit activation mode: reduce_range (x86 FX) is not theirs.
    settings = dict(model_settings(wildcards)["quantize"])
    for key in (*keys_out, *(("reduce_range",) if fmt == "pte" else ())):
        settings.pop(key, None)
    return canonical(settings)


def get_quantize_params(wildcards):
    return _quantize_settings(wildcards, "ptl")


def get_pte_quantize_params(wildcards):
    return _quantize_settings(wildcards, "pte")


def get_sensitivity_params(wildcards):
    return _quantize_settings(wildcards, wildcards.fmt, BUDGET_KEYS)


def _sensitivity_input(wildcards, fmt, key):
    # Without a budget nothing is kept in fp32, so int8 does not wait for the ranking.
    if model_settings(wildcards)["quantize"]["accuracy_budget"] is None:
        return {}
    return {"sensitivity": plan.sensitivity_path(wildcards.model, wildcards.qvariant, fmt, key)}


def get_fused(wildcards):
    return plan.fused_path(wildcards.model, wildcards.qvariant)


def get_quantize_inputs(wildcards):
    sensitivity = _sensitivity_input(wildcards, "ptl", wildcards.engine)
    return {"fused": get_fused(wildcards), "data": get_dataset(wildcards), **sensitivity}


def get_quantize_pte_inputs(wildcards):
    sensitivity = _sensitivity_input(wildcards, "pte", wildcards.backend)
    return {"fused": get_fused(wildcards), "data": get_dataset(wildcards), **sensitivity}


def _point(wildcards, variant):
    return plan.prune_point(MF, wildcards.model, variant)


def get_export_pte_inputs(wildcards):
    variant, model = wildcards.variant, wildcards.model
    if variant == "fp32":
        return {"fused": plan.fused_path(model, "int8")}
    if variant == "int8" or _point(wildcards, variant).before_int8:
        # Calibrated from its own fp32 stage by quantize_pte, whose program is lowered as it is.
        qvariant, data = variant, {}
    else:
        # int8 weights pruned after the int8 calibration, within the budget on the calib split.
        qvariant, data = "int8", {"data": get_dataset(wildcards)}
    return {
        "fused": plan.fused_path(model, qvariant),
        "recipe": plan.pte_recipe_path(model, qvariant, wildcards.backend),
        "program": plan.pte_program_path(model, qvariant, wildcards.backend),
        **data,
    }


def _unstructured_params(wildcards, variant):
    point = _point(wildcards, variant)
    return canonical(
        {
            "method": point.method,
            "amount": point.amount,
            "accuracy_budget": MF["selection"]["accuracy_budget"],
        }
    )


def get_prune_params(wildcards):
    return _unstructured_params(wildcards, wildcards.uvariant)


def get_pte_prune_params(wildcards):
    # Only points that prune int8 weights prune at export; the rest are unpruned programs of
    # their (possibly channel-pruned) model.
    if wildcards.variant in ("fp32", "int8") or _point(wildcards, wildcards.variant).before_int8:
        return None
    return _unstructured_params(wildcards, wildcards.variant)


def get_prune_channel_params(wildcards):
    settings = model_settings(wildcards)
    point = _point(wildcards, f"int8_pruned-{wildcards.point}")
    prune = settings["prune"]
    train = settings["train"]
    return canonical(
        {
            "method": point.method,
            "amount": point.amount,
            "scope": prune["scope"],
            "round_to": prune["round_to"],
            "finetune": prune["finetune"],
            "train": {key: train[key] for key in ("batch_size", "momentum", "weight_decay", "seed")},
        }
    )


def get_sensitivity_plot_inputs(wildcards):
    model = wildcards.model
    return {
        "sensitivities": plan.sensitivities(MF, model),
        "decisions": plan.int8_decisions(MF, model),
    }


def get_device_params(wildcards):
    # Only the runner of the artifact's own format: a new executor_runner reruns .pte only.
    device = dict(MF["devices"][wildcards.device])
    device.pop("pte_runner" if wildcards.fmt == "ptl" else "runner", None)
    return canonical(device)


def get_bench_operations(wildcards, resources):
    # How long to wait for a phone and how often to retry change no measurement: taking
    # `resources` makes this a derived param, which Snakemake leaves out of the rerun trigger.
    return canonical(
        {
            "retries": MF["benchmark"]["retries"],
            "timeouts": MF["benchmark"]["timeouts"],
        }
    )


def get_adb_runner(wildcards):
    device = MF["devices"][wildcards.device]
    return device["runner"] if wildcards.fmt == "ptl" else device["pte_runner"]


def _claims_phone(resource):
    def claim(wildcards):
        return int(wildcards.device in PHONES[resource])

    return claim


def get_phone_resources():
    return {resource: _claims_phone(resource) for resource in PHONES}


def get_host_benchmark_threads(wildcards):
    # Run locally, a host benchmark takes every core Snakemake manages, so no other job runs
    # beside it and disturbs the timing. On a cluster it asks for the CPUs it pins itself to;
    # profiles/slurm shows how to also keep other jobs off its node (--exclusive).
    if LOCAL_CORES is None:
        return MF["devices"][wildcards.device]["threads"]
    return LOCAL_CORES


def get_chw(wildcards):
    return [int(part) for part in wildcards.chw.split("x")]


def get_peak_programs(wildcards):
    return plan.peak_program_paths(MF)


def get_peak_params(wildcards):
    # What the measurement depends on: the device's runtime threads and int8 engine, the GEMM.
    device = MF["devices"][wildcards.device]
    return {
        "threads": device["threads"],
        "engine": device["engine"],
        "shape": list(peak_measurement.GEMM_SHAPE),
        "repeats": peak_measurement.REPEATS,
    }


def get_compare_inputs(wildcards):
    found = plan.compared_artifacts(MF, wildcards.model, wildcards.device)
    device = MF["devices"][wildcards.device]
    # Not the benchmarks: a comparison needs none of their numbers (editing a device's
    # iterations must not rerun it), and it never runs beside one (see rules/compare.smk).
    inputs = {
        "artifacts": [a.path for a in found],
        "evaluations": [a.eval_path for a in found if plan.evaluable_here(a)],
    }
    if device["kind"] == "adb":  # the runners of the formats compared there
        formats = {a.fmt for a in found}
        inputs["runners"] = [device["runner" if f == "ptl" else "pte_runner"] for f in formats]
    return inputs


# What a comparison depends on of its device: where it runs and with how many threads; not the
# benchmark settings (warmup, iterations, repeats, cooldown) nor the runners' paths (inputs).
COMPARE_DEVICE_KEYS = ("kind", "threads", "engine", "serial", "adb_host", "adb_port", "remote_dir")


def get_compare_params(wildcards):
    device = MF["devices"][wildcards.device]
    return canonical(
        {
            "device": {key: device[key] for key in COMPARE_DEVICE_KEYS if key in device},
            **MF["compare"],
        }
    )


def get_compare_runners(wildcards):
    # The runner of each format on a phone, by format (plain builtins for the params).
    device = MF["devices"][wildcards.device]
    return {"ptl": device["runner"], **({"pte": device["pte_runner"]} if "pte_runner" in device else {})}


def get_comparison_paths(wildcards):
    return [plan.compare_path(model, device) for model, device in plan.comparisons(MF)]


def get_benchmark_paths(wildcards):
    return [a.bench_path(device) for a, device in plan.benchmarks(MF)]


def summary_inputs(wildcards):
    artifacts = plan.all_artifacts(MF)
    return {
        "artifacts": [artifact.path for artifact in artifacts],
        "evaluations": [a.eval_path for a in artifacts if plan.evaluable_here(a)],
        "benchmarks": get_benchmark_paths(wildcards),
        "peaks": [plan.peak_path(device) for device in plan.host_devices(MF)],
        "comparisons": get_comparison_paths(wildcards),
    }


# The report's figures (mobileforge.plan.figures): one job draws them all; each is filed in
# the HTML report under its device (category) and model (subcategory).
FIGURES = plan.figures(MF)
FIGURE_PATHS = [figure.path for figure in FIGURES]
_FIGURE_REPORT = {
    # kind: (caption, label)
    "latency_accuracy": ("../report/latency_accuracy.rst", "latency vs accuracy"),
    "latency_distribution": ("../report/latency_distribution.rst", "latency distribution"),
    "load_memory": ("../report/load_memory.rst", "load time and memory"),
    "sizes": ("../report/sizes.rst", "size by variant and format"),
}


def figure_outputs():
    outputs = []
    for figure in FIGURES:
        caption, name = _FIGURE_REPORT[figure.kind]
        where = {
            "category": figure.device or "artifact sizes (any device)",
            "subcategory": figure.model or "all models",
        }
        # (report( must not open a line here: Snakemake's parser reads it as the directive.)
        outputs.append(report(figure.path, caption=caption, labels={"figure": name}, **where))
    return outputs


def get_figure_params(wildcards):
    return [
        {"kind": f.kind, "device": f.device, "model": f.model, "path": f.path} for f in FIGURES
    ]


def get_summary_devices(wildcards):
    return canonical(
        {
            name: {"kind": device["kind"], "engine": device["engine"]}
            for name, device in MF["devices"].items()
        }
    )


def salvage_results(log):
    # onerror: the summary and plots of whatever succeeded (mobileforge.salvage), when this run
    # was to build the summary (not for a run asking for one benchmark); imported only now,
    # pandas and matplotlib are no business of a run that goes well.
    if not any(job.rule.name == "summary" for job in workflow.dag.jobs):
        return
    from mobileforge.salvage import salvage

    try:
        message = salvage(MF)
    except Exception as error:  # never mask the run's own errors
        message = f"mobileforge: could not build a partial summary: {error}"
    if message:
        print(message, file=sys.stderr)
