# flow stage: pseudo-ground-truth dense flows per category (sopcorr.flow.pseudo): nearest
# neighbours on the manifold-embedded features of sampled same-category image pairs.


rule pseudo_flow:
    """Sample `flow.pairs_per_category` ordered image pairs (seeded per category), match every
    source cell to its nearest target cell on the embedded features (mutual-NN and similarity
    validity), and write flow/<category>.zarr (target image coords per source cell)."""
    input:
        embedded=results("manifold", "{variant}", "{category}", "embedded.zarr"),
        features=results("features", "{category}.zarr"),
        instances=results("data", "{category}", "instances.json"),
    output:
        store=directory(results("flow", "{variant}", "{category}.zarr")),
    params:
        flow=config["flow"],
        seed=config["seed"],
        train_fraction=config["dataset"]["train_fraction"],
    threads: 1
    resources:
        mem_mb=1000,
    log:
        results("logs", "pseudo_flow", "{variant}", "{category}.log"),
    benchmark:
        results("benchmarks", "pseudo_flow", "{variant}", "{category}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    script:
        "../scripts/pseudo_flow.py"


ALL_TARGETS.extend(per_category(results("flow", "{variant}", "{category}.zarr"), variant=VARIANT))
