# Which artifact is faster, per model and host device: the candidates (every artifact within
# selection.accuracy_budget, plus the fp32 and int8 references of each format) held loaded in
# processes of their own on the same CPUs and timed in interleaved rounds with an A/A control
# (mobileforge.bench.compare). The benchmarks describe each artifact; this decides between them.
# Like a benchmark it holds every local core, so no other job runs beside it.
rule compare:
    input:
        unpack(get_compare_inputs),
        unpack(get_auto_compare_inputs),
    output:
        comparison=layout.COMPARISON,
    params:
        toolchain=toolchain("compare"),
        settings=get_compare_params,
        accuracy_budget=MF["selection"]["accuracy_budget"],
    log:
        layout.log("compare", "{model}.{device}"),
    benchmark:
        layout.runtime("compare", "{model}.{device}")
    threads: get_host_benchmark_threads
    wildcard_constraints:
        device=HOST_DEVICES,
    resources:
        mem_mb=4000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"


# On a phone: a local rule (the phones are plugged into this machine) that claims no host core
# but its phone's resource, like a phone benchmark; each turn is one runner process there.
rule compare_adb:
    input:
        unpack(get_compare_inputs),
        unpack(get_auto_compare_inputs),
    output:
        comparison=layout.COMPARISON,
    params:
        toolchain=toolchain("compare"),
        settings=get_compare_params,
        accuracy_budget=MF["selection"]["accuracy_budget"],
        runners=get_compare_runners,
        operations=get_bench_operations,
    log:
        layout.log("compare", "{model}.{device}"),
    benchmark:
        layout.runtime("compare", "{model}.{device}")
    threads: 0
    wildcard_constraints:
        device=ADB_DEVICES,
    resources:
        mem_mb=400,
        **get_phone_resources(),
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
