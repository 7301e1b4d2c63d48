# report stage: figures of other stages copied into the report, so that
# `snakemake --report results/<run>/report.html` shows every table and figure with a caption.


rule report_convergence:
    """The manifold stage's convergence plot of one category (paper Fig. 4), for the report."""
    input:
        results("manifold", "{category}", "convergence.png"),
    output:
        report(results("figures", "convergence_{category}.png"), caption="../report/convergence.rst",
               category="Figures", subcategory="Manifold convergence", labels={"category": "{category}"}),
    threads: 1
    resources:
        mem_mb=200,
    log:
        results("logs", "report_convergence", "{category}.log"),
    benchmark:
        results("benchmarks", "report_convergence", "{category}.tsv")
    script:
        "../scripts/report_copy.py"


ALL_TARGETS.extend(per_category(results("figures", "convergence_{category}.png")))
