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
        "../scripts/stage.py"


# A phone benchmark runs on the machine the phones are plugged into (a local rule: see the
# Snakefile), claims no host core and holds its phone's resource (one job per physical phone).
rule benchmark_adb:
    wildcard_constraints:
        device=ADB_DEVICES,
    input:
        artifact="results/{model}/{fmt}/{stem}.{fmt}",
        runner=get_adb_runner,
    output:
        benchmark="results/{model}/bench/{fmt}/{stem}.{device}.json",
    params:
        toolchain=toolchain("benchmark"),
        device=get_device_params,
        operations=get_bench_operations,
    log:
        "logs/benchmark/{model}.{fmt}.{stem}.{device}.log",
    benchmark:
        "benchmarks/benchmark/{model}.{fmt}.{stem}.{device}.tsv"
    threads: 0
    resources:
        mem_mb=200,
        **get_phone_resources(),
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
