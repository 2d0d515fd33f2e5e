rule train:
    input:
        unpack(get_train_inputs),
    output:
        checkpoint="results/{model}/checkpoint.pt",
        sidecar="results/{model}/checkpoint.pt.json",
    params:
        toolchain=toolchain("train"),
        settings=get_train_params,
    log:
        "logs/train/{model}.log",
    benchmark:
        "benchmarks/train/{model}.tsv"
    threads: get_train_threads
    # Priorities follow the chain (train 5 .. export_pte 1, the rest 0): a ready upstream job
    # runs before leaves, so ResNet-18's long chain starts early and does not end the run alone.
    priority: 5
    resources:
        mem_mb=4000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"

