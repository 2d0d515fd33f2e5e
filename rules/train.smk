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
    threads: 2
    resources:
        mem_mb=4000,
    script:
        "../scripts/train.py"

