# features stage: dense CNN feature maps per category (sopcorr.features).
from sopcorr.features.memory import job_memory_mb
from sopcorr.workflow_support import backbone_settings


rule extract_features:
    """Letterbox every image of a category, run the configured backbone, ReLU + per-location
    L2, and write a zarr feature store (N, H, W, C) float16 + valid mask + global descriptors.
    """
    input:
        instances=results("data", "{category}", "instances.json"),
    output:
        store=directory(results("features", "{category}.zarr")),
    log:
        results("logs", "extract_features", "{category}.log"),
    benchmark:
        results("benchmarks", "extract_features", "{category}.tsv")
    # before everything else: a category's two-thread features job starts ahead of the
    # one-thread manifolds (Snakemake sums the priorities of the jobs it starts together, so two
    # manifolds at 1 each would otherwise keep it waiting), then the features -> manifold chains
    # run side by side, before the one-thread pseudo flows (docs/PERFORMANCE.md, "Which job runs
    # first")
    priority: 3
    conda:
        "../../envs/sopcorr.yaml"
    threads: config["numeric_threads"]["features"]
    resources:
        mem_mb=job_memory_mb(
            config["backbone"]["name"],
            config["backbone"]["input_size"],
            config["backbone"]["batch_size"],
            config["backbone"]["layers"],
        ),
    params:
        numeric_threads=config["numeric_threads"]["features"],
        backbone=backbone_settings(config["backbone"]),
        # where and how fast, not what: a params function of `resources` is "derived", and
        # Snakemake's params trigger ignores it (features are bit-identical across batch sizes)
        device=lambda wildcards, resources: config["backbone"]["device"],
        batch_size=lambda wildcards, resources: config["backbone"]["batch_size"],
    script:
        "../scripts/extract_features.py"


ALL_TARGETS.extend(per_category(results("features", "{category}.zarr")))
