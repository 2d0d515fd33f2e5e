rule sensitivity:
    input:
        fused=get_fused,
        data=get_dataset,
    output:
        sensitivity="results/{model}/sensitivity/{qvariant}.{fmt}.{key}.json",
    params:
        toolchain=toolchain("sensitivity"),
        quantize=get_sensitivity_params,
    log:
        "logs/sensitivity/{model}.{qvariant}.{fmt}.{key}.log",
    benchmark:
        "benchmarks/sensitivity/{model}.{qvariant}.{fmt}.{key}.tsv"
    threads: CORES_PER_CPU
    priority: 3  # see rules/train.smk
    wildcard_constraints:
        key="x86|qnnpack|xnnpack|vulkan|coreml",
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
        model="results/{model}/{qvariant}.{engine}.pt",
        sidecar="results/{model}/{qvariant}.{engine}.pt.json",
    params:
        toolchain=toolchain("quantize"),
        quantize=get_quantize_params,
    log:
        "logs/quantize/{model}.{qvariant}.{engine}.log",
    benchmark:
        "benchmarks/quantize/{model}.{qvariant}.{engine}.tsv"
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
        recipe="results/{model}/pte/{qvariant}.{backend}.recipe.json",
        program="results/{model}/pte/{qvariant}.{backend}.pt2",
        sidecar="results/{model}/pte/{qvariant}.{backend}.pt2.json",
    params:
        toolchain=toolchain("quantize_pte"),
        quantize=get_pte_quantize_params,
    log:
        "logs/quantize_pte/{model}.{qvariant}.{backend}.log",
    benchmark:
        "benchmarks/quantize_pte/{model}.{qvariant}.{backend}.tsv"
    threads: CORES_PER_CPU
    priority: 3  # see rules/train.smk
    wildcard_constraints:
        backend="xnnpack|vulkan|coreml",
    resources:
        mem_mb=4000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"


rule plot_sensitivity:
    input:
        unpack(get_sensitivity_plot_inputs),
    output:
        plot=report(
            "results/report/sensitivity/{model}.png",
            caption="../report/sensitivity.rst",
            category="Sensitivity",
            subcategory="{model}",
            labels={"figure": "int8 sensitivity per layer"},
        ),
    params:
        toolchain=toolchain("plot_sensitivity"),
    log:
        "logs/plot_sensitivity/{model}.log",
    benchmark:
        "benchmarks/plot_sensitivity/{model}.tsv"
    threads: CORES_PER_CPU
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
