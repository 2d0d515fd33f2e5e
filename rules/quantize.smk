rule sensitivity:
    input:
        fused=get_fused,
        data=get_dataset,
    output:
        sensitivity=layout.SENSITIVITY,
    params:
        toolchain=toolchain("sensitivity"),
        quantize=get_sensitivity_params,
    log:
        layout.log("sensitivity", "{model}.{qvariant}.{fmt}.{key}"),
    benchmark:
        layout.runtime("sensitivity", "{model}.{qvariant}.{fmt}.{key}")
    threads: CORES_PER_CPU
    priority: 3  # see rules/train.smk
    wildcard_constraints:
        key=layout.one_of(layout.ENGINES + layout.INT8_BACKENDS["pte"]),
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"


# int8 of the fused model (qvariant int8) or of a channel-pruned one (int8_pruned-channel-*).
rule quantize:
    input:
        unpack(get_quantize_inputs),
    output:
        model=layout.fill(layout.INT8, variant="{qvariant}"),
        sidecar=layout.sidecar(layout.fill(layout.INT8, variant="{qvariant}")),
    params:
        toolchain=toolchain("quantize"),
        quantize=get_quantize_params,
    log:
        layout.log("quantize", "{model}.{qvariant}.{engine}"),
    benchmark:
        layout.runtime("quantize", "{model}.{qvariant}.{engine}")
    threads: CORES_PER_CPU
    priority: 3  # see rules/train.smk
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"


# The .pte int8 recipe (calibration + fp32 layers) of one backend and the converted program it
# chose (torch.export), which export_pte lowers as it is.
rule quantize_pte:
    input:
        unpack(get_quantize_pte_inputs),
    output:
        recipe=layout.PTE_RECIPE,
        program=layout.PTE_PROGRAM,
        sidecar=layout.sidecar(layout.PTE_PROGRAM),
    params:
        toolchain=toolchain("quantize_pte"),
        quantize=get_pte_quantize_params,
    log:
        layout.log("quantize_pte", "{model}.{qvariant}.{backend}"),
    benchmark:
        layout.runtime("quantize_pte", "{model}.{qvariant}.{backend}")
    threads: CORES_PER_CPU
    priority: 3  # see rules/train.smk
    wildcard_constraints:
        backend=layout.one_of(layout.INT8_BACKENDS["pte"]),
    resources:
        mem_mb=4000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"


rule plot_sensitivity:
    input:
        unpack(get_sensitivity_plot_inputs),
        unpack(get_auto_sensitivity_plot_inputs),
    output:
        plot=report(
            layout.SENSITIVITY_PLOT,
            caption="../report/sensitivity.rst",
            category="Sensitivity",
            subcategory="{model}",
            labels={"figure": "int8 sensitivity per layer"},
        ),
    params:
        toolchain=toolchain("plot_sensitivity"),
    log:
        layout.log("plot_sensitivity", "{model}"),
    benchmark:
        layout.runtime("plot_sensitivity", "{model}")
    threads: CORES_PER_CPU
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
