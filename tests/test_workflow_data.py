"""The data stage under Snakemake: a tiny synthetic run, a VOC + Berkeley run whose archives
are downloaded from file:// URLs, a dry run and the linter on the default config."""
from __future__ import annotations

import csv
import hashlib
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml

from integration.helpers import copy_workflow, run_snakemake
from test_data_voc import make_keypoint_tree, make_voc_tree

pytestmark = pytest.mark.slow

DATA_RULES = {"generate_synthetic", "download_voc", "download_keypoints", "prepare_category",
              "data_summary", "contact_sheet"}


def _summary(path: Path) -> dict[str, dict]:
    with open(path) as fh:
        return {r["category"]: r for r in csv.DictReader(fh)}


def test_synthetic_data_stage(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    (wd / "tiny.yaml").write_text(yaml.safe_dump({
        "run": "tiny", "seed": 3,
        "dataset": {"synthetic": {"categories": ["bird", "aircraft"], "images_per_category": 5,
                                  "image_size": 80, "pairs_per_category": 2}},
    }))
    targets = ["results/tiny/data/summary.csv", "results/tiny/figures/contact_sheet_bird.png",
               "results/tiny/figures/contact_sheet_aircraft.png"]
    run_snakemake(wd, targets=targets, configfiles=["config/config.yaml", "tiny.yaml"])
    rows = _summary(wd / "results/tiny/data/summary.csv")
    assert sorted(rows) == ["aircraft", "bird"]
    for r in rows.values():
        assert int(r["instances"]) == 5 and int(r["train"]) + int(r["test"]) == 5
        assert int(r["keypoints"]) >= 8 and 0 < float(r["visible_fraction"]) <= 1
        assert int(r["with_ground_truth"]) == 5
    assert (wd / "results/tiny/figures/contact_sheet_bird.png").stat().st_size > 1000
    from sopcorr.data.generic import load_dataset

    ds = load_dataset(wd / "results/tiny/data/bird/instances.json")
    assert [i.id for i in ds.instances] == sorted(i.id for i in ds.instances)
    assert all(i.category == "bird" for i in ds.instances)
    # the generated set as a user's generic dataset, with one keypoint moved off the image:
    # the run stops with one line naming the instance and field
    import json

    user = tmp_path / "user"
    shutil.copytree(wd / "results/tiny/dataset", user)
    data = json.loads((user / "dataset.json").read_text())
    inst = data["instances"][2]
    name = next(iter(inst["keypoints"]))
    inst["keypoints"][name][0] = 500.0
    (user / "dataset.json").write_text(json.dumps(data))
    (wd / "user.yaml").write_text(yaml.safe_dump({"run": "user", "dataset": {"kind": "generic", "path": str(user)}}))
    proc = run_snakemake(wd, targets=["results/user/data/summary.csv"],
                         configfiles=["config/config.yaml", "user.yaml"], check=False)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("sopcorr error:")]
    assert lines and f"instance '{inst['id']}'" in lines[0] and f"field 'keypoints.{name}'" in lines[0]


def _tar(src: Path, out: Path, arcname: str) -> str:
    with tarfile.open(out, "w") as tf:
        tf.add(src, arcname=arcname)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def test_voc_berkeley_data_stage_with_downloads(tmp_path):
    staging = tmp_path / "staging"
    make_voc_tree(staging / "VOC2012")
    make_keypoint_tree(staging / "kp")
    voc_sha = _tar(staging / "VOC2012", tmp_path / "voc.tar", "VOCdevkit/VOC2012")
    kp_sha = _tar(staging / "kp", tmp_path / "kp.tar", "annotations")
    wd = copy_workflow(tmp_path / "wf")
    overlay = {
        "run": "voc", "categories": ["cat", "bird"],
        "dataset": {"kind": "voc_berkeley", "voc": {
            "voc_url": (tmp_path / "voc.tar").as_uri(), "voc_sha256": voc_sha,
            "keypoints_url": (tmp_path / "kp.tar").as_uri(), "keypoints_sha256": kp_sha}},
    }
    (wd / "voc.yaml").write_text(yaml.safe_dump(overlay))
    run_snakemake(wd, targets=["results/voc/data/summary.csv"], configfiles=["config/config.yaml", "voc.yaml"])
    assert (wd / "resources/VOCdevkit/VOC2012/Annotations/2010_000218.xml").is_file()
    rows = _summary(wd / "results/voc/data/summary.csv")
    assert int(rows["cat"]["instances"]) == 1 and int(rows["cat"]["annotated"]) == 10
    assert int(rows["bird"]["instances"]) == 19
    # a wrong checksum stops the download with one clear line
    bad = dict(overlay, run="bad")
    bad["dataset"] = {"kind": "voc_berkeley", "voc": dict(overlay["dataset"]["voc"], voc_sha256="0" * 64,
                                                          voc_root="other/VOCdevkit/VOC2012")}
    (wd / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = run_snakemake(wd, targets=["results/bad/data/summary.csv"],
                         configfiles=["config/config.yaml", "bad.yaml"], check=False)
    assert proc.returncode != 0
    assert "checksum mismatch" in proc.stdout
    assert not (wd / "other/VOCdevkit").exists()


def test_dry_run_and_lint_default_config(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    targets = ["results/default/data/summary.csv"] + [
        f"results/default/figures/contact_sheet_{c}.png" for c in ("bird", "quadruped", "car", "aircraft")]
    out = run_snakemake(wd, targets=targets, configfiles=[], extra=["-n"]).stdout
    for rule in ("generate_synthetic", "prepare_category", "data_summary", "contact_sheet"):
        assert rule in out
    text = run_snakemake(wd, configfiles=[], extra=["--lint"], check=False).stdout
    assert "data.smk:" not in text.replace("Lints for rule", "")  # no file-level lint on data.smk
    for rule in DATA_RULES:
        assert f"Lints for rule {rule} " not in text, text
