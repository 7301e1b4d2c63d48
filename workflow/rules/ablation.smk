# ablation target (issue 8): every stage of the paper's variant and of the improved variant,
# measured alike (pair-wise PCK; dense metrics where ground truth exists). Not part of `all`:
#   snakemake --cores all results/<run>/tables/ablation.csv [--configfile ...]


def _ablation_inputs(wildcards):
    cat = wildcards.category
    out = {
        "instances": results("data", cat, "instances.json"),
        "features": results("features", f"{cat}.zarr"),
    }
    for v in VARIANTS:
        out[f"embedded_{v}"] = results("manifold", v, cat, "embedded.zarr")
        out[f"labels_{v}"] = results("manifold", v, cat, "labels.zarr")
        out[f"model_{v}"] = results("siamese", v, "finetuned.pt")
    return out


rule ablation_category:
    """One category's ablation records (every stage of both variants)."""
    input:
        unpack(_ablation_inputs),
    output:
        results("eval", "{category}", "ablation.json"),
    params:
        run_dir=RESULTS,
    threads: 2
    resources:
        mem_mb=4000,
    log:
        results("logs", "ablation", "{category}.log"),
    benchmark:
        results("benchmarks", "ablation", "{category}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
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
    params:
        categories=CATEGORIES,
    log:
        results("logs", "ablation", "table.log"),
    conda:
        "../../envs/sopcorr.yaml"
    script:
        "../scripts/ablation_table.py"
