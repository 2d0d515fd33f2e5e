rule prune:
    input:
        model="results/{model}/int8.{engine}.pt",
    output:
        model="results/{model}/int8_pruned.{engine}.pt",
        sidecar="results/{model}/int8_pruned.{engine}.pt.json",
    params:
        toolchain=toolchain("prune"),
        prune=get_prune_params,
    log:
        "logs/prune/{model}.{engine}.log",
    benchmark:
        "benchmarks/prune/{model}.{engine}.tsv"
    threads: CORES_PER_CPU
    priority: 2  # see rules/train.smk
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/prune.py"
