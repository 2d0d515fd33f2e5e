rule dataset:
    output:
        data="results/data/{dataset}-{chw}.pt",
        sidecar="results/data/{dataset}-{chw}.pt.json",
    params:
        toolchain=toolchain("dataset"),
        spec=canonical(MF["dataset"]),
        chw=get_chw,
    log:
        "logs/dataset/{dataset}-{chw}.log",
    benchmark:
        "benchmarks/dataset/{dataset}-{chw}.tsv"
    threads: CORES_PER_CPU
    wildcard_constraints:
        dataset="shapes|folder|tensors",
        chw=r"\d+x\d+x\d+",
    resources:
        mem_mb=2000,
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
