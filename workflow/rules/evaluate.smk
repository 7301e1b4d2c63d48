# evaluate stage: the paper's keypoint tables (1, 2), pair-wise PCK, the dense synthetic table and
# the evaluation figures (sopcorr.evaluate, sopcorr.viz). Per-category jobs write
# results/<run>/eval/<category>/*.json; gather rules write results/<run>/tables/*.{csv,md,tex}.

# EVAL, EVAL_PAIRS, EVAL_DENSE, eval_inputs() and matcher_params() live in common.smk (lint: no
# functions beside rules). Every job's params are exactly the config keys it uses: the methods'
# matchers (matcher_params) and the protocol's own keys.


rule eval_keypoints:
    """Keypoint localisation PCK (paper Table 2) and classification by transfer (Table 1 (b))
    of one category: retrieve K training objects, transfer their keypoints through each
    method's dense correspondence, average, threshold absence."""
    input:
        **eval_inputs(EVAL["localisation_methods"]),
    output:
        results("eval", "{category}", "keypoints.json"),
    log:
        results("logs", "eval_keypoints", "{category}.log"),
    benchmark:
        results("benchmarks", "eval_keypoints", "{category}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        methods=EVAL["localisation_methods"],
        matchers=matcher_params(EVAL["localisation_methods"]),
        devices=execution_devices,
        k_neighbors=EVAL["k_neighbors"],
        alpha=EVAL["alpha"],
        prior_sigma_min=EVAL["prior_sigma_min"],
        vote_sigma=EVAL["vote_sigma"],
        threshold_queries=EVAL["threshold_queries"],
        seed=config["seed"],
    script:
        "../scripts/eval_keypoints.py"


rule eval_classify:
    """Keypoint classification with descriptor baselines and linear SVMs (paper Table 1 (a),
    Long et al.'s protocol) of one category."""
    input:
        **eval_inputs(descriptor_methods(EVAL["classification_descriptors"])),
    output:
        results("eval", "{category}", "classify_svm.json"),
    log:
        results("logs", "eval_classify", "{category}.log"),
    benchmark:
        results("benchmarks", "eval_classify", "{category}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        descriptors=EVAL["classification_descriptors"],
        matchers=matcher_params(descriptor_methods(EVAL["classification_descriptors"])),
        devices=execution_devices,
        sift_radii=(
            EVAL["sift_radii"] if "sift" in EVAL["classification_descriptors"] else []
        ),
        conv=conv_params(EVAL["classification_descriptors"]),
        crop_size=EVAL["crop_size"],
        svm_c=EVAL["svm_c"],
        seed=config["seed"],
    script:
        "../scripts/eval_classify.py"


rule eval_pairs:
    """Pair-wise PCK of one category over the dataset's pairs."""
    input:
        **eval_inputs(EVAL["pair_methods"]),
    output:
        results("eval", "{category}", "pairs.json"),
    log:
        results("logs", "eval_pairs", "{category}.log"),
    benchmark:
        results("benchmarks", "eval_pairs", "{category}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        methods=EVAL["pair_methods"],
        matchers=matcher_params(EVAL["pair_methods"]),
        devices=execution_devices,
        alphas=EVAL["pair_alphas"],
        max_pairs=EVAL["max_eval_pairs"],
        seed=config["seed"],
    script:
        "../scripts/eval_pairs.py"


rule eval_dense:
    """Dense end-point error and PCK of one category against the synthetic ground truth."""
    input:
        **eval_inputs(EVAL["dense_methods"]),
    output:
        results("eval", "{category}", "dense.json"),
    log:
        results("logs", "eval_dense", "{category}.log"),
    benchmark:
        results("benchmarks", "eval_dense", "{category}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        methods=EVAL["dense_methods"],
        matchers=matcher_params(EVAL["dense_methods"]),
        devices=execution_devices,
        alphas=EVAL["dense_alphas"],
        stride=EVAL["dense_stride"],
        max_pairs=EVAL["max_eval_pairs"],
        seed=config["seed"],
    script:
        "../scripts/eval_dense.py"


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


rule eval_figures:
    """Dense correspondence colour maps (paper Fig. 1/2) and keypoint predictions against ground
    truth (Fig. 6 right) of one category."""
    input:
        **eval_inputs(EVAL["figure_methods"]),
        keypoints=results("eval", "{category}", "keypoints.json"),
    output:
        correspondence=report(
            results("figures", "correspondence_{category}.png"),
            caption="../report/correspondence.rst",
            category="Figures",
            subcategory="Dense correspondence",
            labels={"category": "{category}"},
        ),
        keypoints=report(
            results("figures", "keypoints_{category}.png"),
            caption="../report/keypoints.rst",
            category="Figures",
            subcategory="Keypoint predictions",
            labels={"category": "{category}"},
        ),
    log:
        results("logs", "eval_figures", "{category}.log"),
    benchmark:
        results("benchmarks", "eval_figures", "{category}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        methods=EVAL["figure_methods"],
        matchers=matcher_params(EVAL["figure_methods"]),
        devices=execution_devices,
        n_pairs=EVAL["figures_per_category"],
    script:
        "../scripts/eval_figures.py"


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
