rule quantize:
    input:
        fused="results/{model}/fused.pt",
        data=get_dataset,
    output:
        model="results/{model}/int8.{engine}.pt",
        sidecar="results/{model}/int8.{engine}.pt.json",
    params:
        toolchain=toolchain("quantize"),
        quantize=get_quantize_params,
    log:
        "logs/quantize/{model}.{engine}.log",
    benchmark:
        "benchmarks/quantize/{model}.{engine}.tsv"
    threads: CORES_PER_CPU
    priority: 3  # see rules/train.smk
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/quantize.py"
