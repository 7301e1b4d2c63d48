# flow stage: pseudo-ground-truth dense flows per category (sopcorr.flow.pseudo) computed by the
# variant's pseudo-ground-truth matcher (sopcorr.matchers.pseudo): nearest neighbours on the
# manifold embedding (paper), the geometric matcher on raw features + embedding (improved).


rule pseudo_flow:
    """Sample `flow.pairs_per_category` ordered image pairs (seeded per category), match them
    with the variant's pseudo-ground-truth matcher and write flow/<variant>/<category>.zarr
    (target image coords per source cell, the matcher's validity). Params: exactly the keys
    that variant's matcher reads (pseudo_gt_params in common.smk); with flow.cycle_images > 0
    also the cycle confirmation's settings (cycle_params) and the store's confirmations.
    """
    input:
        embedded=layout("embedding"),
        features=layout("features"),
        instances=layout("instances"),
    output:
        store=directory(layout("flow")),
    log:
        results("logs", "pseudo_flow", "{variant}", "{category}.log"),
    benchmark:
        results("benchmarks", "pseudo_flow", "{variant}", "{category}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        **cycle_params(),
        pseudo_gt=lambda wc: pseudo_gt_params(wc.variant),
        devices=execution_devices,
        pairs_per_category=config["flow"]["pairs_per_category"],
        pairs_split=config["flow"]["pairs_split"],
        seed=config["seed"],
    script:
        "../scripts/pseudo_flow.py"


ALL_TARGETS.extend(per_category(layout("flow"), variant=VARIANT))
