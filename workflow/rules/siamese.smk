# siamese stage: one network for all categories, trained on the teacher's pseudo-ground-truth
# matches (flow/<variant>/<cat>.zarr), then fine-tuned on the keypoint training split
# (sopcorr.siamese, docs/SIAMESE.md). siamese.architecture: correlation (default) trains the
# correlation network's head on the cached feature grids (features/<cat>.zarr); paper trains
# the paper's flow network on images at siamese.input_size. GPU rules (resources gpu=1) that also
# run on the CPU; a killed job resumes from siamese/<output>.state.pt on its next run.

_SIAMESE_MEM = 4000 if config["backbone"]["name"] == "efficientnet_lite0" else 16000


def _siamese_params(finetune):
    """The siamese settings a job uses (the configured architecture's keys only; training
    leaves the fine-tuning keys out, so changing them reruns only finetune_siamese)."""
    s = config["siamese"]
    tune = ("keypoint_supervision", "keypoint_weight")
    if s["architecture"] == "paper":
        return {k: v for k, v in s.items()
                if k != "correlation" and (finetune or (not k.startswith("finetune_") and k not in tune))}
    shared = ("architecture", "device", "freeze_encoder", "checkpoint_every", "grad_clip") + (tune if finetune else ())
    out = {k: s[k] for k in shared}
    out["correlation"] = {k: v for k, v in s["correlation"].items() if finetune or not k.startswith("finetune_")}
    return out


rule train_siamese:
    """Train the Siamese network on every category's pseudo-ground-truth matches."""
    input:
        features=per_category(results("features", "{category}.zarr")),
        flows=per_category(results("flow", "{variant}", "{category}.zarr")),
        instances=per_category(results("data", "{category}", "instances.json")),
    output:
        model=results("siamese", "{variant}", "model.pt"),
        loss=report(results("siamese", "{variant}", "loss.png"), category="Siamese network"),
    params:
        siamese=_siamese_params(False),
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
    truth, no labels; keypoint supervision only with siamese.keypoint_supervision: true)."""
    input:
        model=results("siamese", "{variant}", "model.pt"),
        features=per_category(results("features", "{category}.zarr")),
        flows=per_category(results("flow", "{variant}", "{category}.zarr")),
        instances=per_category(results("data", "{category}", "instances.json")),
    output:
        model=results("siamese", "{variant}", "finetuned.pt"),
        loss=report(results("siamese", "{variant}", "finetune_loss.png"), category="Siamese network"),
    params:
        siamese=_siamese_params(True),
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
