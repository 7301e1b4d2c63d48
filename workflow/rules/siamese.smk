# siamese stage: one network for all categories, trained on the teacher's pseudo-ground-truth
# matches (flow/<variant>/<cat>.zarr), then fine-tuned on the keypoint training split
# (sopcorr.siamese, docs/SIAMESE.md). siamese.architecture: correlation (default) trains the
# correlation network's head on the cached feature grids (features/<cat>.zarr); paper trains
# the paper's flow network on images at siamese.paper.input_size. GPU rules (resources gpu=1)
# that also run on the CPU; a killed job resumes from siamese/<output>.state.pt on its next run.

from sopcorr.workflow_support import (
    backbone_settings,
    siamese_memory_mb,
    siamese_settings,
)

#: memory of the configured architecture's training: the paper network's encoder, pairs and
#: flows, or the correlation network's cached grids, teacher and head (no backbone with a frozen
#: encoder); a formula of the config (sopcorr.workflow_support.siamese_memory_mb)
_SIAMESE_MEM = siamese_memory_mb(config, CATEGORIES)


rule train_siamese:
    """Train the Siamese network on every category's pseudo-ground-truth matches."""
    input:
        features=per_category(results("features", "{category}.zarr")),
        flows=per_category(results("flow", "{variant}", "{category}.zarr")),
        instances=per_category(results("data", "{category}", "instances.json")),
    output:
        model=results("siamese", "{variant}", "model.pt"),
        loss=report(
            results("siamese", "{variant}", "loss.png"),
            caption="../report/siamese_loss.rst",
            category="Siamese network",
            subcategory="Training loss",
            labels={"variant": "{variant}", "stage": "training"},
        ),
    log:
        results("logs", "train_siamese", "{variant}.log"),
    benchmark:
        results("benchmarks", "train_siamese", "{variant}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    threads: config["numeric_threads"]["training"]
    resources:
        gpu=1,
        mem_mb=_SIAMESE_MEM,
    params:
        **cycle_min_params(),
        numeric_threads=config["numeric_threads"]["training"],
        # where and how often state is saved, not what is learned: params functions of
        # `resources` are "derived", and Snakemake's params trigger ignores them
        siamese=siamese_settings(config["siamese"], finetune=False),
        backbone=backbone_settings(config["backbone"]),
        seed=config["seed"],
        device=lambda wildcards, resources: config["siamese"]["device"],
        checkpoint_every=lambda wildcards, resources: config["siamese"][
            "checkpoint_every"
        ],
    script:
        "../scripts/train_siamese.py"


rule finetune_siamese:
    """Fine-tune the trained network on the pairs of the keypoint training split (pseudo ground
    truth, no labels; keypoint supervision only with siamese.keypoint_supervision: true).
    """
    input:
        model=layout("model"),
        features=per_category(results("features", "{category}.zarr")),
        flows=last_round_flows(),
        instances=per_category(results("data", "{category}", "instances.json")),
    output:
        model=results("siamese", "{variant}", "finetuned.pt"),
        loss=report(
            results("siamese", "{variant}", "finetune_loss.png"),
            caption="../report/siamese_loss.rst",
            category="Siamese network",
            subcategory="Training loss",
            labels={"variant": "{variant}", "stage": "fine-tuning"},
        ),
    log:
        results("logs", "finetune_siamese", "{variant}.log"),
    benchmark:
        results("benchmarks", "finetune_siamese", "{variant}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    threads: config["numeric_threads"]["finetuning"]
    resources:
        gpu=1,
        mem_mb=_SIAMESE_MEM,
    params:
        **cycle_min_params(),
        numeric_threads=config["numeric_threads"]["finetuning"],
        # where and how often state is saved, not what is learned: params functions of
        # `resources` are "derived", and Snakemake's params trigger ignores them
        siamese=siamese_settings(config["siamese"], finetune=True),
        backbone=backbone_settings(config["backbone"]),
        seed=config["seed"],
        device=lambda wildcards, resources: config["siamese"]["device"],
        checkpoint_every=lambda wildcards, resources: config["siamese"][
            "checkpoint_every"
        ],
    script:
        "../scripts/finetune_siamese.py"


rule pseudo_flow_round:
    """Round {round}'s pseudo ground truth of one category: the network of round {round} - 1,
    read out by siamese.round_teacher and kept where forward-backward consistent, on the same
    pairs as round 1's flow store (rounds of self-training, docs/SIAMESE.md)."""
    input:
        pairs=layout("flow"),
        model=previous_model(),
        embedded=layout("embedding"),
        features=layout("features"),
        instances=layout("instances"),
    output:
        store=directory(layout("flow_round")),
    log:
        results("logs", "pseudo_flow", "{variant}", "round{round}", "{category}.log"),
    benchmark:
        results(
            "benchmarks", "pseudo_flow", "{variant}", "round{round}", "{category}.tsv"
        )
    conda:
        "../../envs/sopcorr.yaml"
    threads: 1
    resources:
        mem_mb=1500,
    params:
        **cycle_params(),
        teacher=round_teacher_params(),
        devices=execution_devices,
    script:
        "../scripts/pseudo_flow_round.py"


use rule train_siamese as train_siamese_round with:
    input:
        features=per_category(results("features", "{category}.zarr")),
        flows=round_flows(),
        instances=per_category(results("data", "{category}", "instances.json")),
        start=round_start(),
    output:
        model=layout("model_round"),
        loss=results("siamese", "{variant}", "round{round}", "loss.png"),
    log:
        results("logs", "train_siamese", "{variant}_round{round}.log"),
    benchmark:
        results("benchmarks", "train_siamese", "{variant}_round{round}.tsv")
    params:
        # the round's network between its start and its trained weights (siamese.round_interpolation)
        interpolation=config["siamese"]["round_interpolation"],


rule train_siamese_architecture:
    """The ablation's Siamese network of the architecture that is not configured (the same
    teacher, data and budget keys as train_siamese); not part of `all`."""
    input:
        features=per_category(results("features", "{category}.zarr")),
        flows=per_category(results("flow", "{variant}", "{category}.zarr")),
        instances=per_category(results("data", "{category}", "instances.json")),
    output:
        model=results("siamese", "{variant}", "architecture_{architecture}", "model.pt"),
        loss=results("siamese", "{variant}", "architecture_{architecture}", "loss.png"),
    log:
        results("logs", "train_siamese", "{variant}_{architecture}.log"),
    benchmark:
        results("benchmarks", "train_siamese", "{variant}_{architecture}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    threads: config["numeric_threads"]["training"]
    resources:
        gpu=1,
        mem_mb=lambda wildcards: siamese_memory_mb(
            config, CATEGORIES, wildcards.architecture
        ),
    params:
        numeric_threads=config["numeric_threads"]["training"],
        siamese=architecture_settings(False),
        backbone=backbone_settings(config["backbone"]),
        seed=config["seed"],
        device=lambda wildcards, resources: config["siamese"]["device"],
        checkpoint_every=lambda wildcards, resources: config["siamese"][
            "checkpoint_every"
        ],
    script:
        "../scripts/train_siamese.py"


rule finetune_siamese_architecture:
    """Fine-tune the ablation's network of architecture {architecture} (as finetune_siamese)."""
    input:
        model=results("siamese", "{variant}", "architecture_{architecture}", "model.pt"),
        features=per_category(results("features", "{category}.zarr")),
        flows=per_category(results("flow", "{variant}", "{category}.zarr")),
        instances=per_category(results("data", "{category}", "instances.json")),
    output:
        model=results(
            "siamese", "{variant}", "architecture_{architecture}", "finetuned.pt"
        ),
        loss=results(
            "siamese", "{variant}", "architecture_{architecture}", "finetune_loss.png"
        ),
    log:
        results("logs", "finetune_siamese", "{variant}_{architecture}.log"),
    benchmark:
        results("benchmarks", "finetune_siamese", "{variant}_{architecture}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    threads: config["numeric_threads"]["finetuning"]
    resources:
        gpu=1,
        mem_mb=lambda wildcards: siamese_memory_mb(
            config, CATEGORIES, wildcards.architecture
        ),
    params:
        numeric_threads=config["numeric_threads"]["finetuning"],
        siamese=architecture_settings(True),
        backbone=backbone_settings(config["backbone"]),
        seed=config["seed"],
        device=lambda wildcards, resources: config["siamese"]["device"],
        checkpoint_every=lambda wildcards, resources: config["siamese"][
            "checkpoint_every"
        ],
    script:
        "../scripts/finetune_siamese.py"


ALL_TARGETS.extend(
    expand(
        [
            results("siamese", "{variant}", "model.pt"),
            results("siamese", "{variant}", "loss.png"),
            results("siamese", "{variant}", "finetuned.pt"),
            *round_targets(),
        ],
        variant=VARIANT,
    )
)
