rule evaluate:
    input:
        artifact="results/{model}/{fmt}/{stem}.{fmt}",
        data=get_dataset,
        reference="results/{model}/reference.pt",
    output:
        evaluation="results/{model}/eval/{fmt}/{stem}.json",
    params:
        toolchain=toolchain("evaluate"),
    log:
        "logs/evaluate/{model}.{fmt}.{stem}.log",
    benchmark:
        "benchmarks/evaluate/{model}.{fmt}.{stem}.tsv"
    threads: CORES_PER_CPU
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
