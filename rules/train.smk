rule train:
    input:
        unpack(get_train_inputs),
    output:
        checkpoint=layout.CHECKPOINT,
        sidecar=layout.sidecar(layout.CHECKPOINT),
    params:
        toolchain=toolchain("train"),
        settings=get_train_params,
    log:
        layout.log("train", "{model}"),
    benchmark:
        layout.runtime("train", "{model}")
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

