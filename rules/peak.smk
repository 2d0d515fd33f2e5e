# The host's peak dense throughput per precision: the ceiling of every roofline fraction.
# Programs are built apart (the ExecuTorch compiler costs seconds of CPU, which runs beside
# other jobs); the measurement takes every core, as a host benchmark does.
rule peak_programs:
    output:
        fp32=plan.peak_program_path("fp32"),
        fp32_sidecar=layout.sidecar(plan.peak_program_path("fp32")),
        int8=plan.peak_program_path("int8"),
        int8_sidecar=layout.sidecar(plan.peak_program_path("int8")),
    params:
        toolchain=toolchain("peak_programs"),
        shape=list(peak_measurement.GEMM_SHAPE),
    log:
        layout.log("peak_programs", "gemm"),
    benchmark:
        layout.runtime("peak_programs", "gemm")
    threads: CORES_PER_CPU
    resources:
        mem_mb=2000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"


rule peak:
    input:
        unpack(get_peak_programs),
    output:
        peak=plan.peak_path("{device}"),
    params:
        toolchain=toolchain("peak"),
        measurement=get_peak_params,
    log:
        layout.log("peak", "{device}"),
    benchmark:
        layout.runtime("peak", "{device}")
    threads: get_host_benchmark_threads
    wildcard_constraints:
        device=HOST_DEVICES,
    resources:
        mem_mb=1500,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
