rule benchmark:
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
