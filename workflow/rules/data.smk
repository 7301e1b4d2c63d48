# data stage: the dataset (generated for the synthetic kind, downloaded for voc_berkeley when
# URLs are configured), one instances.json per category, a summary table and contact sheets.
from pathlib import Path as _Path

from sopcorr.workflow_support import prepare_settings, stable

_VOC = config["dataset"]["voc"]
_VOC_PARENT = _Path(_VOC["voc_root"]).parent.parent
_KP_PARENT = _Path(_VOC["keypoints_root"]).parent
_ENV = "../../envs/sopcorr.yaml"


rule generate_synthetic:
    """Generate the synthetic part-annotated benchmark (images, part maps, canonical maps,
    dataset.json with keypoints and evaluation pairs). Its threads are rendering processes:
    the files are byte-identical for any count (each instance has its own generator), and
    every other job waits for this one."""
    output:
        dataset=results("dataset", "dataset.json"),
    log:
        results("logs", "generate_synthetic.log"),
    benchmark:
        results("benchmarks", "generate_synthetic.tsv")
    conda:
        _ENV
    threads: 2
    resources:
        mem_mb=1000,
    params:
        synthetic=stable(config["dataset"]["synthetic"]),
        seed=config["seed"],
        train_fraction=config["dataset"]["train_fraction"],
    script:
        "../scripts/generate_synthetic.py"


rule download_voc:
    """Fetch the PASCAL VOC 2012 trainval tar (dataset.voc.voc_url), check its sha256 and unpack
    it so that dataset.voc.voc_root (<dest>/VOCdevkit/VOC2012) exists."""
    output:
        marker=str(_VOC_PARENT / ".download_voc2012.json"),
    log:
        str(_VOC_PARENT / "logs" / "download_voc.log"),
    benchmark:
        str(_VOC_PARENT / "logs" / "download_voc.tsv")
    conda:
        _ENV
    threads: 1
    resources:
        mem_mb=500,
    params:
        url=_VOC["voc_url"],
        sha256=_VOC["voc_sha256"],
        dest=lambda wildcards, output: str(_Path(output.marker).parent),
    script:
        "../scripts/download_archive.py"


rule download_keypoints:
    """Fetch the Berkeley PASCAL 2011 keypoint tarball (dataset.voc.keypoints_url), check its
    sha256 and unpack it under dataset.voc.keypoints_root."""
    output:
        marker=str(_KP_PARENT / ".download_berkeley_keypoints.json"),
    log:
        str(_KP_PARENT / "logs" / "download_keypoints.log"),
    benchmark:
        str(_KP_PARENT / "logs" / "download_keypoints.tsv")
    conda:
        _ENV
    threads: 1
    resources:
        mem_mb=500,
    params:
        url=_VOC["keypoints_url"],
        sha256=_VOC["keypoints_sha256"],
        dest=_VOC["keypoints_root"],
    script:
        "../scripts/download_archive.py"


# prepare's inputs: the dataset.json (synthetic, generic) or the download markers (voc_berkeley
# with URLs configured; without URLs the folders must already exist)
_PREPARE_INPUTS = (
    {"dataset": dataset_json()}
    if config["dataset"]["kind"] != "voc_berkeley"
    else {
        **({"voc": rules.download_voc.output.marker} if _VOC["voc_url"] else {}),
        **(
            {"keypoints": rules.download_keypoints.output.marker}
            if _VOC["keypoints_url"]
            else {}
        ),
    }
)


rule prepare_category:
    """One category's instances in the generic format, plus the dataset root (sorted by id)."""
    input:
        **_PREPARE_INPUTS,
    output:
        instances=results("data", "{category}", "instances.json"),
    log:
        results("logs", "prepare_category", "{category}.log"),
    benchmark:
        results("benchmarks", "prepare_category", "{category}.tsv")
    conda:
        _ENV
    threads: 1
    resources:
        mem_mb=1000,
    params:
        dataset=prepare_settings(config["dataset"]),
    script:
        "../scripts/prepare_category.py"


rule data_summary:
    """Instances, keypoints, visible fraction and train/test counts per category."""
    input:
        instances=per_category(results("data", "{category}", "instances.json")),
    output:
        csv=results("data", "summary.csv"),
    log:
        results("logs", "data_summary.log"),
    benchmark:
        results("benchmarks", "data_summary.tsv")
    conda:
        _ENV
    threads: 1
    resources:
        mem_mb=500,
    script:
        "../scripts/data_summary.py"


rule contact_sheet:
    """A grid of the category's images (evenly spread by id) with keypoints drawn and named."""
    input:
        instances=results("data", "{category}", "instances.json"),
    output:
        png=results("figures", "contact_sheet_{category}.png"),
    log:
        results("logs", "contact_sheet", "{category}.log"),
    benchmark:
        results("benchmarks", "contact_sheet", "{category}.tsv")
    conda:
        _ENV
    threads: 1
    resources:
        mem_mb=1000,
    params:
        max_images=12,
    script:
        "../scripts/contact_sheet.py"


ALL_TARGETS.extend(per_category(results("data", "{category}", "instances.json")))
ALL_TARGETS.append(results("data", "summary.csv"))
ALL_TARGETS.extend(per_category(results("figures", "contact_sheet_{category}.png")))
