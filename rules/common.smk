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

from mobileforge import cpus, layout, params, plan
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
    # One line naming the key, the reason and the config files, before any job starts (no
    # traceback). Command-line files come first: their values win.
    sources = ", ".join(dict.fromkeys(map(str, workflow.configfiles))) or "no config file"
    sys.exit(f"mobileforge: invalid config: {error} (in {sources})")
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
    return params.train(MF, wildcards.model)


def get_train_threads(wildcards):
    return model_settings(wildcards)["train"]["threads"] * CORES_PER_CPU


def get_train_inputs(wildcards):
    inputs = {"data": get_dataset(wildcards)}
    user_checkpoint = model_settings(wildcards).get("checkpoint")
    if user_checkpoint:
        inputs["user_checkpoint"] = user_checkpoint
    return inputs


def get_fuse_params(wildcards):
    return params.fuse(MF, wildcards.model)


def get_quantize_params(wildcards):
    return params.quantize(MF, wildcards.model, "ptl")


def get_pte_quantize_params(wildcards):
    return params.quantize(MF, wildcards.model, "pte")


def get_sensitivity_params(wildcards):
    return params.quantize(MF, wildcards.model, wildcards.fmt, ranking=True)


def get_fused(wildcards):
    return plan.fused_path(wildcards.model, wildcards.qvariant)


def get_quantize_inputs(wildcards):
    return plan.int8_inputs(MF, wildcards.model, wildcards.qvariant, "ptl", wildcards.engine)


def get_quantize_pte_inputs(wildcards):
    return plan.int8_inputs(MF, wildcards.model, wildcards.qvariant, "pte", wildcards.backend)


def get_export_pte_inputs(wildcards):
    return plan.pte_export_inputs(MF, wildcards.model, wildcards.variant, wildcards.backend)


def get_prune_params(wildcards):
    return params.unstructured_prune(MF, wildcards.model, wildcards.uvariant)


def get_pte_prune_params(wildcards):
    # Only points that prune int8 weights prune at export (None for the others).
    return params.unstructured_prune(MF, wildcards.model, wildcards.variant)


def get_prune_channel_params(wildcards):
    return params.channel_prune(MF, wildcards.model, wildcards.point)


def get_recovery_sidecars(wildcards):
    return plan.recovery_sidecars(MF, wildcards.model, search_verdict)


def get_recovery_figures(wildcards):
    return plan.recovery_figures(MF)


def get_sensitivity_plot_inputs(wildcards):
    model = wildcards.model
    return {
        "sensitivities": plan.sensitivities(MF, model),
        "decisions": plan.int8_decisions(MF, model),
    }


def get_device_params(wildcards):
    return params.device(MF, wildcards.device, wildcards.fmt)


def get_bench_operations(wildcards, resources):
    # Taking `resources` makes this a derived param, which Snakemake leaves out of the rerun
    # trigger: how long to wait for a phone changes no measurement.
    return params.bench_operations(MF)


def get_adb_runner(wildcards):
    return plan.runner_of(MF["devices"][wildcards.device], wildcards.fmt)


def get_profile_runner(wildcards):
    # Only a .pte is profiled on a phone (its executor_runner); a .ptl's record needs no runner.
    if wildcards.fmt != "pte":
        return []
    return get_adb_runner(wildcards)


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
    return params.peak(MF, wildcards.device)


# quantize.mode auto: whether a model gets int8_dynamic is known once it is fused (its MACs by
# layer kind, in the fuse checkpoint's sidecar). Jobs listing artifacts list those apart
# (auto_*), through get_auto_* below: the checkpoint defers only them, so a dry run still plans
# every static artifact. A decision is cached once read: a checkpoint that has to run again
# raises IncompleteCheckpointException first, which is never cached.
_AUTO_DECISIONS = {}


def auto_dynamic(model):
    if model not in _AUTO_DECISIONS:
        sidecar = checkpoints.fuse.get(model=model).output["sidecar"]
        macs = plan.read_macs_by_kind(sidecar)
        _AUTO_DECISIONS[model] = plan.dynamic_pays(MF, model, macs)
    return _AUTO_DECISIONS[model]


# prune.amount search: which amounts a model tries is known verdict by verdict, each from the
# prune_search_step checkpoint of the amount before (mobileforge.prune.search). The same
# deferred listings (auto_*) hold the amounts past the first: asking the verdict of the amount
# to build next makes the job wait for it, so a listing is complete once the search is over,
# and a dry run before any verdict plans the first amount only. Cached as the auto decisions.
_SEARCH_VERDICTS = {}


def search_verdict(model, amount):
    key = (model, amount)
    if key not in _SEARCH_VERDICTS:
        point = plan.PrunePoint("channel", amount)
        step = checkpoints.prune_search_step.get(model=model, point=point.label)
        _SEARCH_VERDICTS[key] = plan.read_search_verdict(step.output["verdict"])
    return _SEARCH_VERDICTS[key]


def _auto_artifacts(models):
    return [
        a
        for model in models
        for a in plan.auto_artifacts(MF, model, auto_dynamic, search_verdict)
    ]


def _search_point(wildcards):
    try:
        return plan.prune_point(MF, wildcards.model, f"int8_pruned-{wildcards.point}")
    except KeyError as error:
        raise WorkflowError(error.args[0]) from None


def get_search_step_inputs(wildcards):
    try:
        return plan.search_step_inputs(
            MF, wildcards.model, _search_point(wildcards), search_verdict
        )
    except ValueError as error:
        raise WorkflowError(str(error)) from None


def get_search_step_params(wildcards):
    return params.prune_search_step(MF, wildcards.model, wildcards.point)


def get_search_steps(wildcards):
    try:
        return plan.search_steps(MF, wildcards.model, search_verdict)
    except ValueError as error:
        raise WorkflowError(str(error)) from None


def get_search_params(wildcards):
    return params.prune_search(MF, wildcards.model)


def get_auto_sensitivity_plot_inputs(wildcards):
    # The calibrations of the amounts a search tries past the first (none without a search).
    model = wildcards.model
    if not plan.searches(MF, model):
        return {"auto_sensitivities": [], "auto_decisions": []}
    static = get_sensitivity_plot_inputs(wildcards)
    return {
        "auto_sensitivities": [
            path
            for path in plan.sensitivities(MF, model, search_verdict)
            if path not in static["sensitivities"]
        ],
        "auto_decisions": [
            path
            for path in plan.int8_decisions(MF, model, search_verdict)
            if path not in static["decisions"]
        ],
    }


def get_auto_compare_inputs(wildcards):
    found = [
        a
        for a in _auto_artifacts([wildcards.model])
        if plan.device_runs(MF, wildcards.device, a)
    ]
    return {
        "auto_artifacts": [a.path for a in found],
        "auto_evaluations": [a.eval_path for a in found if plan.evaluable_here(a)],
    }


def get_auto_benchmark_paths(wildcards):
    return [
        a.bench_path(device)
        for a in _auto_artifacts(MF["models"])
        for device in MF["devices"]
        if plan.device_runs(MF, device, a)
    ]


def get_auto_summary_inputs(wildcards):
    found = _auto_artifacts(MF["models"])
    return {
        "auto_artifacts": [a.path for a in found],
        "auto_evaluations": [a.eval_path for a in found if plan.evaluable_here(a)],
        "auto_benchmarks": get_auto_benchmark_paths(wildcards),
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
        inputs["runners"] = [plan.runner_of(device, fmt) for fmt in formats]
    return inputs


def get_compare_params(wildcards):
    return params.compare(MF, wildcards.device)


def get_compare_runners(wildcards):
    return params.compare_runners(MF, wildcards.device)


def get_comparison_paths(wildcards):
    return [plan.compare_path(model, device) for model, device in plan.comparisons(MF)]


def get_benchmark_paths(wildcards):
    return [a.bench_path(device) for a, device in plan.benchmarks(MF)]


def get_profile_float_model(wildcards):
    return plan.float_model_path(MF, wildcards.model, wildcards.fmt, wildcards.stem)


def get_profile_settings(wildcards):
    return params.profile(MF)


def summary_inputs(wildcards):
    artifacts = plan.all_artifacts(MF)
    return {
        "artifacts": [artifact.path for artifact in artifacts],
        "evaluations": [a.eval_path for a in artifacts if plan.evaluable_here(a)],
        "benchmarks": get_benchmark_paths(wildcards),
        "peaks": [plan.peak_path(device) for device in plan.host_devices(MF)],
        "comparisons": get_comparison_paths(wildcards),
        "searches": plan.search_paths(MF),
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
    return params.figures(MF)


def get_profile_page_inputs(wildcards):
    # The page shows every artifact of its model, int8_dynamic too where quantize.mode auto
    # builds it: it waits for the model's fuse checkpoint (its profiles are asked for only here).
    model = wildcards.model
    auto = _auto_artifacts([model])
    return {
        "profiles": plan.profile_paths(MF, model)
        + [a.profile_path(device) for a in auto for device in MF["devices"]
           if plan.device_runs(MF, device, a)],
        "artifacts": [artifact.path for artifact in plan.artifacts(MF, model) + auto],
        "sensitivities": plan.sensitivities(MF, model, search_verdict),
    }


def get_profile_pages(wildcards):
    return params.profile_pages(MF)


def get_summary_devices(wildcards):
    return params.summary_devices(MF)


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
