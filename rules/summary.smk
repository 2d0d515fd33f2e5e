# A run that ends in errors still gets results/summary.csv and the plots, built from what
# succeeded, failed benchmarks with their error in `note` (mobileforge.salvage); Snakemake still
# exits non-zero.
onerror:
    salvage_results(log)


rule summary:
    input:
        unpack(summary_inputs),
    output:
        summary=report(
            "results/summary.csv", caption="../report/summary.rst", category="Summary"
        ),
    params:
        devices=get_summary_devices,
        accuracy_budget=MF["selection"]["accuracy_budget"],
        unstable_cv=MF["benchmark"]["unstable_cv"],
    log:
        "logs/summary/summary.log",
    benchmark:
        "benchmarks/summary/summary.tsv"
    threads: CORES_PER_CPU
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/summary.py"


rule plots:
    input:
        summary="results/summary.csv",
    output:
        latency_accuracy=report(
            "results/report/latency_accuracy.png",
            caption="../report/latency_accuracy.rst",
            category="Plots",
        ),
        sizes=report(
            "results/report/sizes.png",
            caption="../report/sizes.rst",
            category="Plots",
        ),
    log:
        "logs/plots/plots.log",
    benchmark:
        "benchmarks/plots/plots.tsv"
    threads: CORES_PER_CPU
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/plots.py"
