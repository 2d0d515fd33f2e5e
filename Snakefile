# mobileforge: trained PyTorch models -> fused -> int8 -> pruned -> .ptl / .pte per backend
# -> accuracy of each artifact -> device benchmarks (+ the host's peak throughput)
# -> results/summary.csv, summary.md and the report's plots.
# See README.md for the layout of results/ and docs/configuration.md for every configuration option.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/fuse.smk"
include: "rules/quantize.smk"
include: "rules/prune.smk"
include: "rules/export.smk"
include: "rules/evaluate.smk"
include: "rules/benchmark.smk"
include: "rules/compare.smk"
include: "rules/peak.smk"
include: "rules/profile.smk"
include: "rules/summary.smk"


# Jobs that run on the machine Snakemake runs on, whatever the executor: adb benchmarks need
# the phones plugged into it; the summary, plots and a prune search's verdicts (JSON read and
# compared) are too small to wait in a cluster queue.
localrules:
    benchmark_adb,
    compare_adb,
    profile_adb,
    prune_search_step,
    prune_search,
    summary,
    plots,
    plot_sensitivity,
    plot_recovery,
    profile_page,


rule all:
    default_target: True
    input:
        layout.SUMMARY,
        layout.SUMMARY_MARKDOWN,
        FIGURE_PATHS,
        plan.sensitivity_plots(MF),
        list(plan.recovery_figures(MF).values()),
        plan.profiles(MF),
        plan.profile_pages(MF),
