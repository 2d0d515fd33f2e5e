# Unstructured points prune the int8 weights of the int8 variant (brief's order: int8 -> pruned).
rule prune:
    input:
        model="results/{model}/int8.{engine}.pt",
        fused="results/{model}/fused.pt",
        data=get_dataset,
    output:
        model="results/{model}/{uvariant}.{engine}.pt",
        sidecar="results/{model}/{uvariant}.{engine}.pt.json",
    params:
        toolchain=toolchain("prune"),
        prune=get_prune_params,
    log:
        "logs/prune/{model}.{uvariant}.{engine}.log",
    benchmark:
        "benchmarks/prune/{model}.{uvariant}.{engine}.tsv"
    threads: CORES_PER_CPU
    priority: 2  # see rules/train.smk
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"


# Channel points prune the trained model with its BatchNorm layers, fine-tune and fuse it; int8
# then follows from it as from the fused model (rule quantize, qvariant int8_pruned-channel-*):
# checkpoint -> pruned -> fine-tuned -> fused -> int8.
rule prune_channel:
    input:
        checkpoint="results/{model}/checkpoint.pt",
        data=get_dataset,
    output:
        model="results/{model}/pruned-{point}.pt",
        sidecar="results/{model}/pruned-{point}.pt.json",
    params:
        toolchain=toolchain("prune_channel"),
        prune=get_prune_channel_params,
    log:
        "logs/prune_channel/{model}.{point}.log",
    benchmark:
        "benchmarks/prune_channel/{model}.{point}.tsv"
    threads: get_train_threads
    priority: 4  # see rules/train.smk: a long job at the head of its chain
    resources:
        mem_mb=4000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
