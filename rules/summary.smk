rule summary:
    input:
        unpack(summary_inputs),
    output:
        summary="results/summary.csv",
    params:
        devices=get_summary_devices,
        accuracy_budget=MF["selection"]["accuracy_budget"],
    log:
        "logs/summary/summary.log",
    benchmark:
        "benchmarks/summary/summary.tsv"
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/summary.py"
