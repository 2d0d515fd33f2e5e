# Where each artifact's time goes on a device that benchmarks it: per layer, checked against
# that benchmark's p50 (docs/measurements.md: Where the time goes). On the host it takes the
# cores a benchmark takes, so no other job runs beside it. The float model the artifact was
# built from gives each layer's MACs.
rule profile_host:
    input:
        artifact=layout.ARTIFACT,
        benchmark=layout.BENCHMARK,
        float_model=get_profile_float_model,
    output:
        profile=layout.PROFILE,
    params:
        toolchain=toolchain("profile"),
        device=get_device_params,
        settings=get_profile_settings,
    log:
        layout.log("profile", "{model}.{fmt}.{stem}.{device}"),
    benchmark:
        layout.runtime("profile", "{model}.{fmt}.{stem}.{device}")
    threads: get_host_benchmark_threads
    wildcard_constraints:
        device=HOST_DEVICES,
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"


# A phone's profile record says why there is none (profiling on phones is not built yet).
rule profile_adb:
    wildcard_constraints:
        device=ADB_DEVICES,
    input:
        artifact=layout.ARTIFACT,
        benchmark=layout.BENCHMARK,
    output:
        profile=layout.PROFILE,
    params:
        toolchain=toolchain("profile"),
        device=get_device_params,
        settings=get_profile_settings,
    log:
        layout.log("profile", "{model}.{fmt}.{stem}.{device}"),
    benchmark:
        layout.runtime("profile", "{model}.{fmt}.{stem}.{device}")
    threads: 0
    resources:
        mem_mb=200,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
