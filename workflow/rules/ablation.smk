# ablation target (issue 8): every stage of the paper's variant and of the improved variant,
# measured alike (pair-wise PCK; dense metrics where ground truth exists). Not part of `all`:
#   snakemake --cores all results/<run>/tables/ablation.csv [--configfile ...]


rule ablation_category:
    """One category's ablation records (every stage of both variants): the inputs are the
    files the stages read (ablation_inputs), the params exactly the keys their matchers and
    the protocol use."""
    input:
        unpack(ablation_inputs),
    output:
        results("eval", "{category}", "ablation.json"),
    log:
        results("logs", "ablation", "{category}.log"),
    benchmark:
        results("benchmarks", "ablation", "{category}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    threads: config["numeric_threads"]["ablation"]
    resources:
        mem_mb=4000,
    params:
        numeric_threads=config["numeric_threads"]["ablation"],
        variants=VARIANTS,
        matchers=ablation_matchers(),
        raw_matchers=matcher_params(["nn_raw"]),
        devices=execution_devices,
        backbone={
            k: config["backbone"][k]
            for k in ("name", "input_size", "layers", "weights", "relu")
        },
        layer_sets=EVAL["ablation_layer_sets"],
        alphas=EVAL["pair_alphas"],
        max_pairs=EVAL["max_eval_pairs"],
        dense_stride=EVAL["dense_stride"],
        seed=config["seed"],
        rounds=ROUNDS,
    script:
        "../scripts/ablation.py"


rule ablation:
    """Gather the ablation table (CSV + Markdown) and its figure."""
    input:
        per_category(results("eval", "{category}", "ablation.json")),
    output:
        csv=results("tables", "ablation.csv"),
        md=results("tables", "ablation.md"),
        figure=results("figures", "ablation.png"),
    log:
        results("logs", "ablation", "table.log"),
    conda:
        "../../envs/sopcorr.yaml"
    params:
        categories=CATEGORIES,
    script:
        "../scripts/ablation_table.py"
