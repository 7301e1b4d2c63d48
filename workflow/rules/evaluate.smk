# evaluate stage: the paper's keypoint tables (1, 2), pair-wise PCK, the dense synthetic table and
# the evaluation figures (sopcorr.evaluate, sopcorr.viz). One job per category runs every protocol
# (results/<run>/eval/<category>/*.json and its figures); gather rules write
# results/<run>/tables/*.{csv,md,tex}.

# EVAL, EVAL_PAIRS, EVAL_DENSE, EVAL_METHODS, eval_inputs(), evaluation_protocols() and
# matcher_params() live in common.smk (lint: no functions beside rules). The job's params are
# exactly the config keys its protocols and matchers use.

#: the per-category job's outputs (pairs / dense only where the dataset has them)
_EVAL_OUTPUTS = {
    "keypoints": results("eval", "{category}", "keypoints.json"),
    "classify": results("eval", "{category}", "classify_svm.json"),
}
if EVAL_PAIRS:
    _EVAL_OUTPUTS["pairs"] = results("eval", "{category}", "pairs.json")
if EVAL_DENSE:
    _EVAL_OUTPUTS["dense"] = results("eval", "{category}", "dense.json")


rule evaluate:
    """Every evaluation protocol of one category in one process, sharing its frames and
    matchers: keypoint localisation PCK (Table 2) and classification by transfer (Table 1
    (b)), the SVM descriptor baselines (Table 1 (a)), pair-wise PCK, dense metrics against the
    synthetic ground truth, the dense correspondence colour maps (Fig. 1/2) and the keypoint
    predictions (Fig. 6 right)."""
    input:
        **eval_inputs(EVAL_METHODS),
    output:
        **_EVAL_OUTPUTS,
        correspondence=report(
            results("figures", "correspondence_{category}.png"),
            caption="../report/correspondence.rst",
            category="Figures",
            subcategory="Dense correspondence",
            labels={"category": "{category}"},
        ),
        keypoint_figure=report(
            results("figures", "keypoints_{category}.png"),
            caption="../report/keypoints.rst",
            category="Figures",
            subcategory="Keypoint predictions",
            labels={"category": "{category}"},
        ),
    log:
        results("logs", "evaluate", "{category}.log"),
    benchmark:
        results("benchmarks", "evaluate", "{category}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        protocols=evaluation_protocols(),
        matchers=matcher_params(EVAL_METHODS),
        devices=execution_devices,
        seed=config["seed"],
    script:
        "../scripts/evaluate.py"


_TABLE_INPUTS = {
    "keypoint_classification": per_category(
        results("eval", "{category}", "classify_svm.json")
    )
    + per_category(results("eval", "{category}", "keypoints.json")),
    "keypoint_pck": per_category(results("eval", "{category}", "keypoints.json")),
    "keypoint_pck_no_absence": per_category(
        results("eval", "{category}", "keypoints.json")
    ),
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
        html=report(
            results("tables", "{table}.html"),
            caption="../report/table.rst",
            category="Tables",
            subcategory=lambda wc: REPORT_TABLE_GROUPS.get(wc.table, "Other"),
            labels=lambda wc: {"table": REPORT_TABLE_TITLES.get(wc.table, wc.table)},
        ),
    log:
        results("logs", "eval_table", "{table}.log"),
    benchmark:
        results("benchmarks", "eval_table", "{table}.tsv")
    wildcard_constraints:
        table="|".join(_TABLE_INPUTS),
    conda:
        "../../envs/sopcorr.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        table=lambda wc: wc.table,
        categories=CATEGORIES,
        notes=lambda wc: table_note_params(wc.table),
        paper_rows=config["dataset"]["kind"] == "voc_berkeley",
    script:
        "../scripts/eval_table.py"


_BARS = {  # figure name -> (table, key column, key value, y label)
    "pck_bars_keypoint": ("keypoint_pck", None, None, "PCK (%)"),
    "accuracy_bars_classification": (
        "keypoint_classification",
        None,
        None,
        "accuracy (%)",
    ),
}
if EVAL_PAIRS:
    _BARS["pck_bars_pairs"] = ("pair_pck", "alpha", EVAL["alpha"], "PCK (%)")
if EVAL_DENSE:
    _BARS["pck_bars_dense"] = (
        "dense_synthetic",
        "metric",
        f"pck@{EVAL['alpha']:g}",
        "dense PCK (%)",
    )


rule eval_bars:
    """Bar chart of one table: value per category per method."""
    input:
        lambda wc: results("tables", f"{_BARS[wc.name][0]}.csv"),
    output:
        report(
            results("figures", "{name}.png"),
            caption="../report/bars.rst",
            category="Figures",
            subcategory="Per-category bars",
            labels=lambda wc: {"figure": REPORT_BAR_TITLES.get(wc.name, wc.name)},
        ),
    log:
        results("logs", "eval_bars", "{name}.log"),
    benchmark:
        results("benchmarks", "eval_bars", "{name}.tsv")
    wildcard_constraints:
        name="|".join(_BARS),
    conda:
        "../../envs/sopcorr.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        key=lambda wc: _BARS[wc.name][1],
        key_value=lambda wc: _BARS[wc.name][2],
        ylabel=lambda wc: _BARS[wc.name][3],
        title=lambda wc: f"{_BARS[wc.name][0]}"
        + (
            f" ({_BARS[wc.name][1]} = {_BARS[wc.name][2]})"
            if _BARS[wc.name][1]
            else ""
        ),
    script:
        "../scripts/eval_bars.py"


for _t in EVAL_TABLES:
    ALL_TARGETS.extend(
        results("tables", f"{_t}.{ext}") for ext in ("csv", "md", "tex", "html")
    )
ALL_TARGETS.extend(results("figures", f"{_n}.png") for _n in _BARS)
ALL_TARGETS.extend(per_category(results("figures", "correspondence_{category}.png")))
ALL_TARGETS.extend(per_category(results("figures", "keypoints_{category}.png")))
