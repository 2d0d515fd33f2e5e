# A run that ends in errors still gets results/summary.csv and the plots, built from what
# succeeded, failed benchmarks with their error in `note` (mobileforge.salvage); Snakemake still
# exits non-zero.
onerror:
    warm.shutdown()
    salvage_results(log)


# The run's warm workers exit with it (after an idle minute if the run is killed).
onsuccess:
    warm.shutdown()


rule summary:
    input:
        unpack(summary_inputs),
        unpack(get_auto_summary_inputs),
    output:
        summary=report(
            layout.SUMMARY,
            caption="../report/summary.rst",
            category="Summary",
            subcategory="tables",
            labels={"file": "summary.csv (every row)"},
        ),
        markdown=report(
            layout.SUMMARY_MARKDOWN,
            caption="../report/summary_md.rst",
            category="Summary",
            subcategory="tables",
            labels={"file": "summary.md (best first, then every row)"},
        ),
        html=report(
            layout.SUMMARY_HTML,
            caption="../report/summary_md.rst",
            category="Summary",
            subcategory="tables",
            labels={"file": "summary tables (view)"},
        ),
    params:
        toolchain=toolchain("summary"),
        devices=get_summary_devices,
        accuracy_budget=MF["selection"]["accuracy_budget"],
        unstable_cv=MF["benchmark"]["unstable_cv"],
        profile_pages=get_profile_pages,
        recovery_figures=get_recovery_figures,
    log:
        layout.log("summary", "summary"),
    benchmark:
        layout.runtime("summary", "summary")
    threads: CORES_PER_CPU
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"


rule plots:
    input:
        summary=layout.SUMMARY,
        benchmarks=get_benchmark_paths,
        auto_benchmarks=get_auto_benchmark_paths,
    output:
        figure_outputs(),
    params:
        toolchain=toolchain("plots"),
        figures=get_figure_params,
        accuracy_budget=MF["selection"]["accuracy_budget"],
    log:
        layout.log("plots", "plots"),
    benchmark:
        layout.runtime("plots", "plots")
    threads: CORES_PER_CPU
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"


# Where each artifact of a model spends its time, layer by layer, with the int8 sensitivity and
# what each layer kept in fp32 costs (mobileforge.profile_page); summary.md links it.
rule profile_page:
    input:
        unpack(get_profile_page_inputs),
    output:
        markdown=report(
            layout.PROFILE_PAGE,
            caption="../report/profile_page.rst",
            category="Where the time goes",
            subcategory="{model}",
            labels={"file": "{model}.md (per-layer profile)"},
        ),
        html=report(
            layout.PROFILE_PAGE_HTML,
            caption="../report/profile_page.rst",
            category="Where the time goes",
            subcategory="{model}",
            labels={"file": "per-layer profile (view)"},
        ),
    params:
        toolchain=toolchain("profile_page"),
    log:
        layout.log("profile_page", "{model}"),
    benchmark:
        layout.runtime("profile_page", "{model}")
    threads: CORES_PER_CPU
    conda:
        "../envs/mobileforge.yaml"
    script:
        "../scripts/stage.py"
