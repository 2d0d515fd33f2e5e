# The host's peak dense throughput per precision: the ceiling of every roofline fraction.
# Programs are built apart (the ExecuTorch compiler costs seconds of CPU, which runs beside
# other jobs); the measurement takes every core, as a host benchmark does.
rule peak_programs:
    output:
        fp32=plan.peak_program_path("fp32"),
        fp32_sidecar=plan.peak_program_path("fp32") + ".json",
        int8=plan.peak_program_path("int8"),
        int8_sidecar=plan.peak_program_path("int8") + ".json",
    params:
        toolchain=toolchain("peak_programs"),
        shape=list(peak_measurement.GEMM_SHAPE),
    log:
        "logs/peak_programs/gemm.log",
    benchmark:
        "benchmarks/peak_programs/gemm.tsv"
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
        "logs/peak/{device}.log",
    benchmark:
        "benchmarks/peak/{device}.tsv"
    threads: get_host_benchmark_threads
    wildcard_constraints:
        device=HOST_DEVICES,
    resources:
        mem_mb=1500,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
