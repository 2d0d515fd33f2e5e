rule export_ptl_fp32:
    input:
        model=layout.FUSED,
    output:
        artifact=layout.PTL_FP32,
        sidecar=layout.sidecar(layout.PTL_FP32),
    params:
        toolchain=toolchain("export_ptl"),
    log:
        layout.log("export_ptl", "{model}.fp32.{backend}"),
    benchmark:
        layout.runtime("export_ptl", "{model}.fp32.{backend}")
    threads: CORES_PER_CPU
    wildcard_constraints:
        backend=layout.one_of(layout.BACKENDS["ptl"]),
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"


# int8 models run on CPU kernels only: no GPU backend exists for them.
rule export_ptl_int8:
    input:
        model=layout.fill(layout.INT8, variant="{ivariant}"),
    output:
        artifact=layout.fill(layout.PTL_INT8, variant="{ivariant}"),
        sidecar=layout.sidecar(layout.fill(layout.PTL_INT8, variant="{ivariant}")),
    params:
        toolchain=toolchain("export_ptl"),
    log:
        layout.log("export_ptl", "{model}.{ivariant}.{engine}.{backend}"),
    benchmark:
        layout.runtime("export_ptl", "{model}.{ivariant}.{engine}.{backend}")
    threads: CORES_PER_CPU
    wildcard_constraints:
        backend=layout.one_of(layout.INT8_BACKENDS["ptl"]),
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
        artifact=layout.PTE,
        sidecar=layout.sidecar(layout.PTE),
    params:
        toolchain=toolchain("export_pte"),
        prune=get_pte_prune_params,
    log:
        layout.log("export_pte", "{model}.{variant}.{backend}"),
    benchmark:
        layout.runtime("export_pte", "{model}.{variant}.{backend}")
    threads: CORES_PER_CPU
    priority: 1  # see rules/train.smk
    wildcard_constraints:
        backend=layout.one_of(layout.BACKENDS["pte"]),
    resources:
        mem_mb=4000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
