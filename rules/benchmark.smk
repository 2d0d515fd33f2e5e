rule benchmark:
    wildcard_constraints:
        device=HOST_DEVICES,
    input:
        artifact="results/{model}/{fmt}/{stem}.{fmt}",
    output:
        benchmark="results/{model}/bench/{fmt}/{stem}.{device}.json",
    params:
        device=get_device_params,
    log:
        "logs/benchmark/{model}.{fmt}.{stem}.{device}.log",
    benchmark:
        "benchmarks/benchmark/{model}.{fmt}.{stem}.{device}.tsv"
    threads: get_benchmark_threads
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/benchmark.py"


# A phone benchmark runs on the machine the phones are plugged into, claims no host core and
# holds its phone's resource (one job per physical phone at a time).
rule benchmark_adb:
    localrule: True
    wildcard_constraints:
        device=ADB_DEVICES,
    input:
        artifact="results/{model}/{fmt}/{stem}.{fmt}",
        runner=get_adb_runner,
    output:
        benchmark="results/{model}/bench/{fmt}/{stem}.{device}.json",
    params:
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
        "../scripts/benchmark.py"
