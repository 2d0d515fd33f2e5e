rule summary:
    input:
        unpack(summary_inputs),
    output:
        summary=report(
            "results/summary.csv", caption="../report/summary.rst", category="Summary"
        ),
    params:
        toolchain=toolchain("summary"),
        devices=get_summary_devices,
        accuracy_budget=MF["selection"]["accuracy_budget"],
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
    params:
        toolchain=toolchain("plots"),
    log:
        "logs/plots/plots.log",
    benchmark:
        "benchmarks/plots/plots.tsv"
    threads: CORES_PER_CPU
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/plots.py"
