rule export_ptl_fp32:
    input:
        model="results/{model}/fused.pt",
    output:
        artifact="results/{model}/ptl/fp32.{backend}.ptl",
        sidecar="results/{model}/ptl/fp32.{backend}.ptl.json",
    params:
        toolchain=toolchain("export_ptl"),
    log:
        "logs/export_ptl/{model}.fp32.{backend}.log",
    benchmark:
        "benchmarks/export_ptl/{model}.fp32.{backend}.tsv"
    threads: CORES_PER_CPU
    wildcard_constraints:
        backend="cpu|vulkan|metal",
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"


# int8 models run on CPU kernels only: no GPU backend exists for them.
rule export_ptl_int8:
    input:
        model="results/{model}/{ivariant}.{engine}.pt",
    output:
        artifact="results/{model}/ptl/{ivariant}.{engine}.{backend}.ptl",
        sidecar="results/{model}/ptl/{ivariant}.{engine}.{backend}.ptl.json",
    params:
        toolchain=toolchain("export_ptl"),
    log:
        "logs/export_ptl/{model}.{ivariant}.{engine}.{backend}.log",
    benchmark:
        "benchmarks/export_ptl/{model}.{ivariant}.{engine}.{backend}.tsv"
    threads: CORES_PER_CPU
    wildcard_constraints:
        backend="cpu",
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"


rule export_pte:
    input:
        unpack(get_export_pte_inputs),
    output:
        artifact="results/{model}/pte/{variant}.{backend}.pte",
        sidecar="results/{model}/pte/{variant}.{backend}.pte.json",
    params:
        toolchain=toolchain("export_pte"),
        prune=get_pte_prune_params,
    log:
        "logs/export_pte/{model}.{variant}.{backend}.log",
    benchmark:
        "benchmarks/export_pte/{model}.{variant}.{backend}.tsv"
    threads: CORES_PER_CPU
    priority: 1  # see rules/train.smk
    wildcard_constraints:
        backend="xnnpack|vulkan|coreml",
    resources:
        mem_mb=4000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
