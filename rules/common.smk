# Helpers, config validation, wildcard constraints and input/param functions.
# Parsed on every Snakemake start: keep it torch-free (mobileforge.config and .plan are).
import os
import re
import sys

sys.path.insert(0, workflow.basedir)
# Jobs inherit this: TorchScript serialises class constants in set order, so an unfrozen .ptl
# is only byte-identical across runs when Python's hash seed is fixed.
os.environ.setdefault("PYTHONHASHSEED", "0")

from snakemake.exceptions import WorkflowError

from mobileforge import cpus, plan
from mobileforge.config import ConfigError, canonical, resolve_config
from mobileforge.fingerprint import job_toolchain, stage_names
from mobileforge.versions import installed_executorch_mismatch

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
if CORES_PER_CPU > 1:
    print(
        f"mobileforge: --cores {LOCAL_CORES} on {cpus.available_cpus()} CPUs: each job "
        f"claims {CORES_PER_CPU} cores per runtime thread, so jobs never share a CPU",
        file=sys.stderr,
    )


def _alternatives(names):
    return "|".join(re.escape(name) for name in names) or "(?!)"


def _devices_of_kind(kind):
    return _alternatives(name for name, device in MF["devices"].items() if device["kind"] == kind)


# Host and adb benchmarks are separate rules (adb ones run where the phones are plugged in):
# each matches only its kind's device names.
HOST_DEVICES = _devices_of_kind("host")
ADB_DEVICES = _devices_of_kind("adb")


wildcard_constraints:
    model=_alternatives(MF["models"]),
    device=_alternatives(MF["devices"]),
    engine="x86|qnnpack",
    variant="fp32|int8|int8_pruned",
    qvariant="int8|int8_pruned",
    fmt="ptl|pte",


def toolchain(stage):
    # A rule's rerun trigger for its code and packages (mobileforge.fingerprint): the rule
    # running stages.<stage> passes params: toolchain=toolchain("<stage>"). Computed once per
    # stage, lazily; each job gets its own view (a .ptl job does not depend on executorch).
    if stage not in stage_names():
        raise WorkflowError(f"toolchain({stage!r}): mobileforge/stages.py has no such stage")

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


def get_quantize_params(wildcards):
    return canonical(model_settings(wildcards)["quantize"])


def get_prune_params(wildcards):
    return canonical(model_settings(wildcards)["prune"])


def get_pte_quantize_params(wildcards):
    # fp32 programs do not depend on calibration settings, nor pt2e programs on the x86-only
    # reduce_range: keep them out of the rerun trigger.
    if wildcards.variant == "fp32":
        return None
    settings = dict(model_settings(wildcards)["quantize"])
    settings.pop("reduce_range", None)
    return canonical(settings)


def get_pte_prune_params(wildcards):
    return get_prune_params(wildcards) if wildcards.variant == "int8_pruned" else None


def get_device_params(wildcards):
    return canonical(MF["devices"][wildcards.device])


def get_host_benchmark_threads(wildcards):
    # Run locally, a host benchmark takes every core Snakemake manages, so no other job runs
    # beside it and disturbs the timing. On a cluster it asks for the CPUs it pins itself to;
    # profiles/slurm shows how to also keep other jobs off its node (--exclusive).
    if LOCAL_CORES is None:
        return MF["devices"][wildcards.device]["threads"]
    return LOCAL_CORES


def get_chw(wildcards):
    return [int(part) for part in wildcards.chw.split("x")]


def summary_inputs(wildcards):
    artifacts = plan.all_artifacts(MF)
    return {
        "artifacts": [artifact.path for artifact in artifacts],
        "evaluations": [a.eval_path for a in artifacts if plan.evaluable_here(a)],
        "benchmarks": [a.bench_path(device) for a, device in plan.benchmarks(MF)],
    }


def get_summary_devices(wildcards):
    return canonical(
        {
            name: {"kind": device["kind"], "engine": device["engine"]}
            for name, device in MF["devices"].items()
        }
    )
