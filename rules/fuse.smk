rule fuse:
    input:
        checkpoint="results/{model}/checkpoint.pt",
        data=get_dataset,
    output:
        fused="results/{model}/fused.pt",
        sidecar="results/{model}/fused.pt.json",
        reference="results/{model}/reference.pt",
    params:
        toolchain=toolchain("fuse"),
        fuse=get_fuse_params,
    log:
        "logs/fuse/{model}.log",
    benchmark:
        "benchmarks/fuse/{model}.tsv"
    threads: CORES_PER_CPU
    priority: 4  # see rules/train.smk
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
