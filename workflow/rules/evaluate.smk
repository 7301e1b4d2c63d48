# evaluate stage: the paper's keypoint tables (1, 2), pair-wise PCK, the dense synthetic table and
# the evaluation figures (sopcorr.evaluate, sopcorr.viz). Per-category jobs write
# results/<run>/eval/<category>/*.json; gather rules write results/<run>/tables/*.{csv,md,tex}.

# EVAL, EVAL_PAIRS, EVAL_DENSE and eval_inputs() live in common.smk (lint: no functions beside rules)


rule eval_keypoints:
    """Keypoint localisation PCK (paper Table 2) and classification by transfer (Table 1 (b))
    of one category: retrieve K training objects, transfer their keypoints through each
    method's dense correspondence, average, threshold absence."""
    input:
        **eval_inputs(EVAL["localisation_methods"]),
    output:
        results("eval", "{category}", "keypoints.json"),
    threads: 1
    conda:
        "../../envs/sopcorr.yaml"
    resources:
        mem_mb=3000,
    log:
        results("logs", "eval_keypoints", "{category}.log"),
    benchmark:
        results("benchmarks", "eval_keypoints", "{category}.tsv")
    script:
        "../scripts/eval_keypoints.py"


rule eval_classify:
    """Keypoint classification with descriptor baselines and linear SVMs (paper Table 1 (a),
    Long et al.'s protocol) of one category."""
    input:
        **eval_inputs(EVAL["classification_descriptors"]),
    output:
        results("eval", "{category}", "classify_svm.json"),
    threads: 1
    conda:
        "../../envs/sopcorr.yaml"
    resources:
        mem_mb=3000,
    log:
        results("logs", "eval_classify", "{category}.log"),
    benchmark:
        results("benchmarks", "eval_classify", "{category}.tsv")
    script:
        "../scripts/eval_classify.py"


rule eval_pairs:
    """Pair-wise PCK of one category over the dataset's pairs."""
    input:
        **eval_inputs(EVAL["pair_methods"]),
    output:
        results("eval", "{category}", "pairs.json"),
    threads: 1
    conda:
        "../../envs/sopcorr.yaml"
    resources:
        mem_mb=3000,
    log:
        results("logs", "eval_pairs", "{category}.log"),
    benchmark:
        results("benchmarks", "eval_pairs", "{category}.tsv")
    script:
        "../scripts/eval_pairs.py"


rule eval_dense:
    """Dense end-point error and PCK of one category against the synthetic ground truth."""
    input:
        **eval_inputs(EVAL["dense_methods"]),
    output:
        results("eval", "{category}", "dense.json"),
    threads: 1
    conda:
        "../../envs/sopcorr.yaml"
    resources:
        mem_mb=3000,
    log:
        results("logs", "eval_dense", "{category}.log"),
    benchmark:
        results("benchmarks", "eval_dense", "{category}.tsv")
    script:
        "../scripts/eval_dense.py"


_TABLE_INPUTS = {
    "keypoint_classification": per_category(results("eval", "{category}", "classify_svm.json"))
    + per_category(results("eval", "{category}", "keypoints.json")),
    "keypoint_pck": per_category(results("eval", "{category}", "keypoints.json")),
    "keypoint_pck_no_absence": per_category(results("eval", "{category}", "keypoints.json")),
    "pair_pck": per_category(results("eval", "{category}", "pairs.json")),
    "dense_synthetic": per_category(results("eval", "{category}", "dense.json")),
}
EVAL_TABLES = ["keypoint_classification", "keypoint_pck", "keypoint_pck_no_absence"]
if EVAL_PAIRS:
    EVAL_TABLES.append("pair_pck")
if EVAL_DENSE:
    EVAL_TABLES.append("dense_synthetic")


rule eval_table:
    """Gather the per-category results into one table: CSV (first column method, one column per
    category, then mean), Markdown and LaTeX laid out like the paper's tables."""
    input:
        lambda wc: _TABLE_INPUTS[wc.table],
    output:
        csv=results("tables", "{table}.csv"),
        md=results("tables", "{table}.md"),
        tex=results("tables", "{table}.tex"),
        html=report(results("tables", "{table}.html"), caption="../report/table.rst",
                    category="Tables", subcategory=lambda wc: REPORT_TABLE_GROUPS.get(wc.table, "Other"),
                    labels=lambda wc: {"table": REPORT_TABLE_TITLES.get(wc.table, wc.table)}),  # report.smk
    params:
        table=lambda wc: wc.table,
        categories=CATEGORIES,
    wildcard_constraints:
        table="|".join(_TABLE_INPUTS),
    threads: 1
    conda:
        "../../envs/sopcorr.yaml"
    resources:
        mem_mb=500,
    log:
        results("logs", "eval_table", "{table}.log"),
    benchmark:
        results("benchmarks", "eval_table", "{table}.tsv")
    script:
        "../scripts/eval_table.py"


rule eval_figures:
    """Dense correspondence colour maps (paper Fig. 1/2) and keypoint predictions against ground
    truth (Fig. 6 right) of one category."""
    input:
        **eval_inputs(EVAL["figure_methods"]),
        keypoints=results("eval", "{category}", "keypoints.json"),
    output:
        correspondence=report(results("figures", "correspondence_{category}.png"),
                              caption="../report/correspondence.rst", category="Figures",
                              subcategory="Dense correspondence", labels={"category": "{category}"}),
        keypoints=report(results("figures", "keypoints_{category}.png"),
                         caption="../report/keypoints.rst", category="Figures",
                         subcategory="Keypoint predictions", labels={"category": "{category}"}),
    threads: 1
    conda:
        "../../envs/sopcorr.yaml"
    resources:
        mem_mb=3000,
    log:
        results("logs", "eval_figures", "{category}.log"),
    benchmark:
        results("benchmarks", "eval_figures", "{category}.tsv")
    script:
        "../scripts/eval_figures.py"


_BARS = {  # figure name -> (table, key column, key value, y label)
    "pck_bars_keypoint": ("keypoint_pck", None, None, "PCK (%)"),
    "accuracy_bars_classification": ("keypoint_classification", None, None, "accuracy (%)"),
}
if EVAL_PAIRS:
    _BARS["pck_bars_pairs"] = ("pair_pck", "alpha", EVAL["alpha"], "PCK (%)")
if EVAL_DENSE:
    _BARS["pck_bars_dense"] = ("dense_synthetic", "metric", f"pck@{EVAL['alpha']:g}", "dense PCK (%)")


rule eval_bars:
    """Bar chart of one table: value per category per method."""
    input:
        lambda wc: results("tables", f"{_BARS[wc.name][0]}.csv"),
    output:
        report(results("figures", "{name}.png"), caption="../report/bars.rst", category="Figures",
               subcategory="Per-category bars",
               labels=lambda wc: {"figure": REPORT_BAR_TITLES.get(wc.name, wc.name)}),  # report.smk
    params:
        key=lambda wc: _BARS[wc.name][1],
        key_value=lambda wc: _BARS[wc.name][2],
        ylabel=lambda wc: _BARS[wc.name][3],
        title=lambda wc: f"{_BARS[wc.name][0]}" + (f" ({_BARS[wc.name][1]} = {_BARS[wc.name][2]})" if _BARS[wc.name][1] else ""),
    wildcard_constraints:
        name="|".join(_BARS),
    threads: 1
    conda:
        "../../envs/sopcorr.yaml"
    resources:
        mem_mb=500,
    log:
        results("logs", "eval_bars", "{name}.log"),
    benchmark:
        results("benchmarks", "eval_bars", "{name}.tsv")
    script:
        "../scripts/eval_bars.py"


for _t in EVAL_TABLES:
    ALL_TARGETS.extend(results("tables", f"{_t}.{ext}") for ext in ("csv", "md", "tex", "html"))
ALL_TARGETS.extend(results("figures", f"{_n}.png") for _n in _BARS)
ALL_TARGETS.extend(per_category(results("figures", "correspondence_{category}.png")))
ALL_TARGETS.extend(per_category(results("figures", "keypoints_{category}.png")))
