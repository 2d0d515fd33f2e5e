rule train:
    input:
        unpack(get_train_inputs),
    output:
        checkpoint="results/{model}/checkpoint.pt",
        sidecar="results/{model}/checkpoint.pt.json",
    params:
        settings=get_train_params,
    log:
        "logs/train/{model}.log",
    benchmark:
        "benchmarks/train/{model}.tsv"
    threads: get_train_threads
    resources:
        mem_mb=4000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/train.py"

