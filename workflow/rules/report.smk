# report stage: `snakemake --report results/<run>/report.html` (run after the workflow; `make demo`
# does) builds one self-contained HTML report. It opens on the workflow description, which rule
# report_description writes from the run's own tables (results/<run>/report/description.rst: the
# headline table with the best method marked, what each method is, links to the figures); the
# Snakefile's global `report:` points at it. The menu (every output registered with report()):
#   Tables           / Correspondence | Keypoints / <table title>  tables/<table>.html (evaluate.smk, report/table.rst)
#                    / Generalisation / <protocol>  tables/<protocol>.html, once built (generalisation.smk)
#   Figures          / Dense correspondence / <cat>  figures/correspondence_<cat>.png (report/correspondence.rst)
#                    / Keypoint predictions / <cat>  figures/keypoints_<cat>.png      (report/keypoints.rst)
#                    / Per-category bars / <table>   figures/*_bars_*.png             (report/bars.rst)
#   Manifold         / Convergence / <cat>, <variant>  manifold/<variant>/<cat>/convergence.png (manifold.smk)
#   Siamese network  / Training loss / <variant>, <stage>  siamese/<variant>/*loss.png (siamese.smk)
# Category, subcategory and label names come from REPORT_* below, so the rules files share them.
# Snakemake 9's built-in HTML reporter needs no plugin (jinja2 and pygments come with snakemake).
import os

#: menu titles of the result tables (evaluate.smk's eval_table labels)
REPORT_TABLE_TITLES = {
    "pair_pck": "Pair-wise PCK",
    "keypoint_pck": "Keypoint PCK (paper Table 2)",
    "keypoint_pck_no_absence": "Keypoint PCK, absence never predicted",
    "keypoint_classification": "Keypoint classification (paper Table 1)",
    "dense_synthetic": "Dense correspondence, synthetic ground truth",
}
#: menu titles of the bar figures (evaluate.smk's eval_bars labels)
REPORT_BAR_TITLES = {
    "pck_bars_pairs": "Pair-wise PCK",
    "pck_bars_keypoint": "Keypoint PCK",
    "accuracy_bars_classification": "Keypoint classification",
    "pck_bars_dense": "Dense PCK",
}


#: menu group of each table (evaluate.smk's eval_table subcategory)
REPORT_TABLE_GROUPS = {
    t: ("Keypoints" if t.startswith("keypoint") else "Correspondence")
    for t in REPORT_TABLE_TITLES
}

#: the generalisation tables (generalisation.smk, not part of `all`) that this run has built:
#: the report shows them (menu Tables / Generalisation, and the first page), and from then on
#: `snakemake` keeps them current (delete tables/<table>.csv to drop one)
REPORT_PROTOCOL_TABLES = [
    _t for _t in PROTOCOL_TABLES if os.path.exists(results("tables", f"{_t}.csv"))
]

REPORT_DESCRIPTION = results("report", "description.rst")
#: the Snakefile's global `report:`: the run's generated page once it exists, else a page that
#: says how to make it (absolute, since results/ lives in the working directory)
REPORT_PAGE = (
    os.path.abspath(REPORT_DESCRIPTION)
    if os.path.exists(REPORT_DESCRIPTION)
    else str(Path(workflow.basedir) / "workflow" / "report" / "description_missing.rst")
)


rule report_description:
    """The report's first screen, generated from the run's tables (sopcorr.report_summary)."""
    input:
        tables=[
            results("tables", f"{_t}.csv")
            for _t in EVAL_TABLES + REPORT_PROTOCOL_TABLES
        ],
        md=[
            results("tables", f"{_t}.md")
            for _t in EVAL_TABLES + REPORT_PROTOCOL_TABLES
        ],
        figures=[results("figures", f"{_n}.png") for _n in _BARS]
        + per_category(results("figures", "correspondence_{category}.png"))
        + per_category(results("figures", "keypoints_{category}.png")),
        viewer=results("viewer"),
    output:
        description=REPORT_DESCRIPTION,
    log:
        results("logs", "report_description.log"),
    benchmark:
        results("benchmarks", "report_description.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        summary={
            "run": RUN,
            "dataset": config["dataset"]["kind"],
            "categories": CATEGORIES,
            "variant": VARIANT,
            "backbone": f"{config['backbone']['name']} at {config['backbone']['input_size']} px",
            "alpha": EVAL["alpha"],
        },
        # the viewer's page relative to results/<run>/, where `make demo` writes report.html
        viewer="viewer/index.html",
    script:
        "../scripts/report_description.py"


ALL_TARGETS.append(REPORT_DESCRIPTION)
