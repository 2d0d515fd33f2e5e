rule benchmark_host:
    input:
        artifact=layout.ARTIFACT,
    output:
        benchmark=layout.BENCHMARK,
    params:
        toolchain=toolchain("benchmark"),
        device=get_device_params,
    log:
        layout.log("benchmark", "{model}.{fmt}.{stem}.{device}"),
    benchmark:
        layout.runtime("benchmark", "{model}.{fmt}.{stem}.{device}")
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
        artifact=layout.ARTIFACT,
        runner=get_adb_runner,
    output:
        benchmark=layout.BENCHMARK,
    params:
        toolchain=toolchain("benchmark"),
        device=get_device_params,
        operations=get_bench_operations,
    log:
        layout.log("benchmark", "{model}.{fmt}.{stem}.{device}"),
    benchmark:
        layout.runtime("benchmark", "{model}.{fmt}.{stem}.{device}")
    threads: 0
    resources:
        mem_mb=200,
        **get_phone_resources(),
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
