rule evaluate:
    input:
        artifact=layout.ARTIFACT,
        data=get_dataset,
        reference=layout.REFERENCE,
    output:
        evaluation=layout.EVALUATION,
    params:
        toolchain=toolchain("evaluate"),
    log:
        layout.log("evaluate", "{model}.{fmt}.{stem}"),
    benchmark:
        layout.runtime("evaluate", "{model}.{fmt}.{stem}")
    threads: CORES_PER_CPU
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
