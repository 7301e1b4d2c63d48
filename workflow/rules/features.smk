# features stage: dense CNN feature maps per category (sopcorr.features).
from sopcorr.features.backbones import job_memory_mb


rule extract_features:
    """Letterbox every image of a category, run the configured backbone, ReLU + per-location
    L2, and write a zarr feature store (N, H, W, C) float16 + valid mask + global descriptors."""
    input:
        instances=results("data", "{category}", "instances.json"),
    output:
        store=directory(results("features", "{category}.zarr")),
    params:
        backbone=config["backbone"],
        seed=config["seed"],
    threads: 2
    resources:
        mem_mb=job_memory_mb(config["backbone"]["name"], config["backbone"]["input_size"],
                             config["backbone"]["batch_size"], config["backbone"]["layers"]),
    log:
        results("logs", "extract_features", "{category}.log"),
    benchmark:
        results("benchmarks", "extract_features", "{category}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    script:
        "../scripts/extract_features.py"


ALL_TARGETS.extend(per_category(results("features", "{category}.zarr")))
