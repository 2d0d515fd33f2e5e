# Unstructured points prune the int8 weights of the int8 variant (brief's order: int8 -> pruned).
rule prune:
    input:
        model=layout.fill(layout.INT8, variant="int8"),
        fused=layout.FUSED,
        data=get_dataset,
    output:
        model=layout.fill(layout.INT8, variant="{uvariant}"),
        sidecar=layout.sidecar(layout.fill(layout.INT8, variant="{uvariant}")),
    params:
        toolchain=toolchain("prune"),
        prune=get_prune_params,
    log:
        layout.log("prune", "{model}.{uvariant}.{engine}"),
    benchmark:
        layout.runtime("prune", "{model}.{uvariant}.{engine}")
    threads: CORES_PER_CPU
    priority: 2  # see rules/train.smk
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"


# The recovery curve of each channel point (mobileforge.report.plot_recovery); summary.md links it.
rule plot_recovery:
    input:
        sidecars=get_recovery_sidecars,
    output:
        plot=report(
            layout.RECOVERY_FIGURE,
            caption="../report/recovery.rst",
            category="Pruning",
            subcategory="{model}",
            labels={"figure": "recovery of each channel point"},
        ),
    params:
        toolchain=toolchain("plot_recovery"),
    log:
        layout.log("plot_recovery", "{model}"),
    benchmark:
        layout.runtime("plot_recovery", "{model}")
    threads: CORES_PER_CPU
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"


# Channel points prune the trained model with its BatchNorm layers, fine-tune and fuse it; int8
# then follows from it as from the fused model (rule quantize, qvariant int8_pruned-channel-*):
# checkpoint -> pruned -> fine-tuned -> fused -> int8.
rule prune_channel:
    input:
        checkpoint=layout.CHECKPOINT,
        data=get_dataset,
    output:
        model=layout.PRUNED,
        sidecar=layout.sidecar(layout.PRUNED),
    params:
        toolchain=toolchain("prune_channel"),
        prune=get_prune_channel_params,
    log:
        layout.log("prune_channel", "{model}.{point}"),
    benchmark:
        layout.runtime("prune_channel", "{model}.{point}")
    threads: get_train_threads
    priority: 4  # see rules/train.smk: a long job at the head of its chain
    resources:
        mem_mb=4000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"


# prune.amount search: a checkpoint per amount tried. Its verdict (every int8 artifact of the
# point within selection.accuracy_budget of fp32) decides the next amount, so the listings of a
# model's artifacts (rules/common.smk, search_verdict) learn the search's points one by one and
# only the amounts tried are built.
checkpoint prune_search_step:
    input:
        unpack(get_search_step_inputs),
    output:
        verdict=layout.PRUNE_SEARCH_STEP,
    params:
        toolchain=toolchain("prune_search_step"),
        step=get_search_step_params,
    log:
        layout.log("prune_search_step", "{model}.{point}"),
    benchmark:
        layout.runtime("prune_search_step", "{model}.{point}")
    threads: CORES_PER_CPU
    resources:
        mem_mb=500,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"


# Where a model's search ended (every verdict, the amount chosen, why it stopped): the summary
# shows it.
rule prune_search:
    input:
        steps=get_search_steps,
    output:
        search=layout.PRUNE_SEARCH,
    params:
        toolchain=toolchain("prune_search"),
        search=get_search_params,
    log:
        layout.log("prune_search", "{model}"),
    benchmark:
        layout.runtime("prune_search", "{model}")
    threads: CORES_PER_CPU
    resources:
        mem_mb=500,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
