rule sensitivity:
    input:
        fused="results/{model}/fused.pt",
        data=get_dataset,
    output:
        sensitivity="results/{model}/sensitivity/{fmt}.{key}.json",
    params:
        quantize=get_sensitivity_params,
    log:
        "logs/sensitivity/{model}.{fmt}.{key}.log",
    benchmark:
        "benchmarks/sensitivity/{model}.{fmt}.{key}.tsv"
    threads: CORES_PER_CPU
    priority: 3  # see rules/train.smk
    wildcard_constraints:
        key="x86|qnnpack|xnnpack|vulkan|coreml",
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/sensitivity.py"


rule quantize:
    input:
        unpack(get_quantize_inputs),
        fused="results/{model}/fused.pt",
    output:
        model="results/{model}/int8.{engine}.pt",
        sidecar="results/{model}/int8.{engine}.pt.json",
    params:
        quantize=get_quantize_params,
    log:
        "logs/quantize/{model}.{engine}.log",
    benchmark:
        "benchmarks/quantize/{model}.{engine}.tsv"
    threads: CORES_PER_CPU
    priority: 3  # see rules/train.smk
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/quantize.py"


# The .pte int8 recipe (calibration + fp32 layers) of one backend; export_pte applies it.
rule quantize_pte:
    input:
        unpack(get_quantize_pte_inputs),
        fused="results/{model}/fused.pt",
    output:
        recipe="results/{model}/pte/int8.{backend}.recipe.json",
    params:
        quantize=get_pte_quantize_params,
    log:
        "logs/quantize_pte/{model}.{backend}.log",
    benchmark:
        "benchmarks/quantize_pte/{model}.{backend}.tsv"
    threads: CORES_PER_CPU
    priority: 3  # see rules/train.smk
    wildcard_constraints:
        backend="xnnpack|vulkan|coreml",
    resources:
        mem_mb=4000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/quantize_pte.py"


rule plot_sensitivity:
    input:
        unpack(get_sensitivity_plot_inputs),
    output:
        plot=report(
            "results/report/sensitivity/{model}.png",
            caption="../report/sensitivity.rst",
            category="Sensitivity",
            subcategory="{model}",
        ),
    log:
        "logs/plot_sensitivity/{model}.log",
    benchmark:
        "benchmarks/plot_sensitivity/{model}.tsv"
    threads: CORES_PER_CPU
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/plot_sensitivity.py"
