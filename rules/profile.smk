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


# On a phone a .pte runs in its executor_runner with ETDump on and the ETDump is pulled, when the
# runner has --etdump_path (asked of the runner on the phone); otherwise, and for a .ptl, the
# record says why there is none. It holds the phone as a benchmark does.
rule profile_adb:
    wildcard_constraints:
        device=ADB_DEVICES,
    input:
        artifact=layout.ARTIFACT,
        benchmark=layout.BENCHMARK,
        runner=get_profile_runner,
    output:
        profile=layout.PROFILE,
    params:
        toolchain=toolchain("profile"),
        device=get_device_params,
        settings=get_profile_settings,
        operations=get_bench_operations,
    log:
        layout.log("profile", "{model}.{fmt}.{stem}.{device}"),
    benchmark:
        layout.runtime("profile", "{model}.{fmt}.{stem}.{device}")
    threads: 0
    resources:
        mem_mb=1500,
        **get_phone_resources(),
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
