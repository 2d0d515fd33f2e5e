rule benchmark_host:
    input:
        artifact="results/{model}/{fmt}/{stem}.{fmt}",
    output:
        benchmark="results/{model}/bench/{fmt}/{stem}.{device}.json",
    params:
        toolchain=toolchain("benchmark"),
        device=get_device_params,
    log:
        "logs/benchmark/{model}.{fmt}.{stem}.{device}.log",
    benchmark:
        "benchmarks/benchmark/{model}.{fmt}.{stem}.{device}.tsv"
    threads: get_host_benchmark_threads
    wildcard_constraints:
        device=HOST_DEVICES,
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/benchmark.py"


# A local rule (see the Snakefile): the phones are plugged into the machine Snakemake runs on.
rule benchmark_adb:
    input:
        artifact="results/{model}/{fmt}/{stem}.{fmt}",
    output:
        benchmark="results/{model}/bench/{fmt}/{stem}.{device}.json",
    params:
        toolchain=toolchain("benchmark"),
        device=get_device_params,
    log:
        "logs/benchmark/{model}.{fmt}.{stem}.{device}.log",
    benchmark:
        "benchmarks/benchmark/{model}.{fmt}.{stem}.{device}.tsv"
    threads: CORES_PER_CPU  # it only drives the phone
    wildcard_constraints:
        device=ADB_DEVICES,
    resources:
        mem_mb=1000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/benchmark.py"
