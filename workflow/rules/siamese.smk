# siamese stage: one Siamese flow network for all categories, trained on the manifold's
# pseudo-ground-truth flows, then fine-tuned on the keypoint training split (sopcorr.siamese).
# GPU rules (resources gpu=1) that also run on the CPU; a killed job resumes from
# siamese/<output>.state.pt on its next run.

from sopcorr.features.backbones import job_memory_mb

#: the encoder's share (sopcorr.features.backbones.job_memory_mb) plus the pairs, flows and network
_SIAMESE_MEM = 2000 + job_memory_mb(config["backbone"]["name"], config["siamese"]["input_size"],
                                    2 * config["siamese"]["batch_size"],
                                    training=not config["siamese"]["freeze_encoder"])
#: settings of the training rule (fine-tuning keys left out so changing them reruns only finetune_siamese)
_SIAMESE_TRAIN = {k: v for k, v in config["siamese"].items()
                  if not k.startswith("finetune_") and k not in ("keypoint_supervision", "keypoint_weight")}


rule train_siamese:
    """Train the Siamese flow network on every category's pseudo-ground-truth flows."""
    input:
        flows=per_category(results("flow", "{variant}", "{category}.zarr")),
        instances=per_category(results("data", "{category}", "instances.json")),
    output:
        model=results("siamese", "{variant}", "model.pt"),
        loss=report(results("siamese", "{variant}", "loss.png"), caption="../report/siamese_loss.rst",
                    category="Siamese network", subcategory="Training loss",
                    labels={"variant": "{variant}", "stage": "training"}),
    params:
        siamese=_SIAMESE_TRAIN,
        backbone=config["backbone"],
        seed=config["seed"],
    threads: 2
    resources:
        gpu=1,
        mem_mb=_SIAMESE_MEM,
    log:
        results("logs", "train_siamese", "{variant}.log"),
    benchmark:
        results("benchmarks", "train_siamese", "{variant}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    script:
        "../scripts/train_siamese.py"


rule finetune_siamese:
    """Fine-tune the trained network on the pairs of the keypoint training split (pseudo ground
    truth; sparse keypoint supervision only with siamese.keypoint_supervision: true)."""
    input:
        model=results("siamese", "{variant}", "model.pt"),
        flows=per_category(results("flow", "{variant}", "{category}.zarr")),
        instances=per_category(results("data", "{category}", "instances.json")),
    output:
        model=results("siamese", "{variant}", "finetuned.pt"),
        loss=report(results("siamese", "{variant}", "finetune_loss.png"), caption="../report/siamese_loss.rst",
                    category="Siamese network", subcategory="Training loss",
                    labels={"variant": "{variant}", "stage": "fine-tuning"}),
    params:
        siamese=config["siamese"],
        backbone=config["backbone"],
        seed=config["seed"],
    threads: 2
    resources:
        gpu=1,
        mem_mb=_SIAMESE_MEM,
    log:
        results("logs", "finetune_siamese", "{variant}.log"),
    benchmark:
        results("benchmarks", "finetune_siamese", "{variant}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    script:
        "../scripts/finetune_siamese.py"


ALL_TARGETS.extend(expand([
    results("siamese", "{variant}", "model.pt"),
    results("siamese", "{variant}", "loss.png"),
    results("siamese", "{variant}", "finetuned.pt"),
], variant=VARIANT))
