rule dataset:
    output:
        data=layout.DATASET,
        sidecar=layout.sidecar(layout.DATASET),
    params:
        toolchain=toolchain("dataset"),
        spec=canonical(MF["dataset"]),
        chw=get_chw,
    log:
        layout.log("dataset", "{dataset}-{chw}"),
    benchmark:
        layout.runtime("dataset", "{dataset}-{chw}")
    threads: CORES_PER_CPU
    wildcard_constraints:
        dataset=layout.one_of(layout.DATASETS),
        chw=r"\d+x\d+x\d+",
    resources:
        mem_mb=2000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
