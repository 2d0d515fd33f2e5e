# A checkpoint: its sidecar's MACs by layer kind decide which int8 variants a model in
# quantize.mode auto gets (mobileforge.plan.int8_variants; read in rules/common.smk).
checkpoint fuse:
    input:
        checkpoint=layout.CHECKPOINT,
        data=get_dataset,
    output:
        fused=layout.FUSED,
        sidecar=layout.sidecar(layout.FUSED),
        reference=layout.REFERENCE,
    params:
        toolchain=toolchain("fuse"),
        fuse=get_fuse_params,
    log:
        layout.log("fuse", "{model}"),
    benchmark:
        layout.runtime("fuse", "{model}")
    threads: CORES_PER_CPU
    priority: 4  # see rules/train.smk
    resources:
        mem_mb=3000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
