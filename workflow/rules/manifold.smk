# manifold stage: the paper's loop (KFD embedding -> Ward parts -> Gaussian part models ->
# graph cut) per category (sopcorr.manifold). Resumable: per-iteration checkpoints live in
# manifold/<category>/state/ (not an output, so Snakemake keeps them when a killed job reruns).
from sopcorr.workflow_support import manifold_settings


rule manifold:
    """Iterate KFD embedding, Ward clustering into K parts, Gaussian part models and 8-connected
    graph-cut refinement until the labels stop changing; write labels, models, the embedded
    features (iteration 1 and the last iteration) and the convergence table and figure.
    """
    input:
        features=results("features", "{category}.zarr"),
        instances=results("data", "{category}", "instances.json"),
    output:
        convergence=results("manifold", "{variant}", "{category}", "convergence.csv"),
        embedding=results("manifold", "{variant}", "{category}", "embedding.npz"),
        part_models=results("manifold", "{variant}", "{category}", "part_models.npz"),
        labels=directory(results("manifold", "{variant}", "{category}", "labels.zarr")),
        embedded=directory(
            results("manifold", "{variant}", "{category}", "embedded.zarr")
        ),
        embedded_iter1=directory(
            results("manifold", "{variant}", "{category}", "embedded_iter1.zarr")
        ),
        figure=report(
            results("manifold", "{variant}", "{category}", "convergence.png"),
            caption="../report/convergence.rst",
            category="Manifold",
            subcategory="Convergence",
            labels={"category": "{category}", "variant": "{variant}"},
        ),
    log:
        results("logs", "manifold", "{variant}", "{category}.log"),
    benchmark:
        results("benchmarks", "manifold", "{variant}", "{category}.tsv")
    # before the one-thread pseudo flows: the features -> manifold chains run first (the
    # manifolds on one thread each, two side by side), so the flows then run two at a time
    # instead of one beside an idle core (docs/PERFORMANCE.md, "Which job runs first")
    priority: 1
    conda:
        "../../envs/sopcorr.yaml"
    threads: config["numeric_threads"]["manifold"]
    resources:
        mem_mb=4000,
    params:
        numeric_threads=config["numeric_threads"]["manifold"],
        manifold=lambda wc: manifold_settings(config["manifold"], wc.variant),
        seed=config["seed"],
        state_dir=lambda wc: results("manifold", wc.variant, wc.category, "state"),
    script:
        "../scripts/manifold.py"


ALL_TARGETS.extend(
    per_category(
        results("manifold", "{variant}", "{category}", "convergence.csv"),
        variant=VARIANT,
    )
    + per_category(
        results("manifold", "{variant}", "{category}", "convergence.png"),
        variant=VARIANT,
    )
    + per_category(
        results("manifold", "{variant}", "{category}", "embedded.zarr"), variant=VARIANT
    )
    + per_category(
        results("manifold", "{variant}", "{category}", "labels.zarr"), variant=VARIANT
    )
)
