"""The paper configuration (issue 7, item 7).

* ``config/paper.yaml`` holds the paper's setting (checked against the paper's numbers, no run);
* a miniature VOC 2012 + Berkeley tree (tests/integration/voc_mini.py: generated JPEGs,
  annotation files in the real formats) runs through the whole workflow to the tables with
  config/config.yaml + config/paper.yaml + an overlay that only shrinks sizes and points at the
  miniature (no downloads) and at a randomly initialised VGG16 state dict (backbone.weights).
"""
from __future__ import annotations

import copy

import pytest
import yaml

from integration.helpers import REPO, TABLES_ONLY, copy_workflow, run_snakemake, table_files

PAPER = REPO / "config" / "paper.yaml"
RUN = "paper_mini"

#: what the miniature may change; everything else is the paper's setting
SIZE_OVERRIDES = {
    "run": RUN,
    "categories": ["aeroplane", "cat"],
    "backbone": {"input_size": 96, "batch_size": 4, "device": "cpu"},
    "manifold": {"n_parts": 3, "n_components": 4, "subclasses": 1, "landmarks": 16,
                 "fit_samples": 200, "precluster": 20, "max_iter": 1},
    "flow": {"pairs_per_category": 4, "siftflow_levels": 1, "siftflow_iterations": 2},
    "siamese": {"checkpoint_every": 1, "device": "cpu",
                "paper": {"input_size": 64, "steps": 2, "batch_size": 2, "finetune_steps": 1}},
    "evaluate": {"k_neighbors": 2, "sift_radii": [20], "crop_size": 32, "max_eval_pairs": 4,
                 "figures_per_category": 0},
}


def _merged(*layers):
    from sopcorr.config import deep_merge, validate_config

    out: dict = {}
    for layer in layers:
        out = deep_merge(out, layer)
    return validate_config(out)


def _base_and_paper():
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    paper = yaml.safe_load(PAPER.read_text())
    return base, paper


def test_paper_yaml_holds_the_papers_setting():
    from sopcorr.features.registry import get_spec

    cfg = _merged(*_base_and_paper())
    assert cfg["dataset"]["kind"] == "voc_berkeley"
    voc = cfg["dataset"]["voc"]
    assert voc["voc_url"] and voc["keypoints_url"], "download URLs of VOC 2012 and the keypoints"
    assert cfg["categories"] is None  # all 20 categories
    bb = cfg["backbone"]
    assert bb["name"] == "vgg16" and bb["input_size"] == 704
    spec = get_spec("vgg16")
    layers = bb["layers"] or list(spec.default_layers)
    stride = min(spec.layer(n).stride for n in layers)
    channels = sum(spec.layer(n).channels for n in layers)
    assert (bb["input_size"] // stride, channels) == (44, 512), \
        f"layers {layers} give {bb['input_size'] // stride}x{bb['input_size'] // stride}x{channels}, " \
        "the paper uses 44x44x512"
    m = cfg["manifold"]
    assert (m["variant"], m["n_components"], m["n_parts"]) == ("paper", 32, 15)
    assert (cfg["evaluate"]["k_neighbors"], cfg["evaluate"]["alpha"]) == (25, 0.1)
    s = cfg["siamese"]
    assert s["architecture"] == "paper", "the paper's stacked-streams flow network, not the project's"
    assert s["paper"]["rotation_deg"] == 16 and s["paper"]["scale_range"] == [0.9, 2.0]
    assert s["paper"]["truncation"] == "paper" and s["paper"]["input_size"] == 352
    assert s["device"] in ("auto", "cuda")


def test_miniature_overrides_only_sizes_and_paths():
    base, paper = _base_and_paper()
    full = _merged(base, paper)
    mini = _merged(base, paper, SIZE_OVERRIDES)
    for section, key in [("backbone", "name"), ("backbone", "layers"), ("manifold", "variant"),
                         ("manifold", "solver"), ("manifold", "pairwise"), ("siamese", "freeze_encoder"),
                         ("siamese", "architecture"), ("evaluate", "alpha"), ("dataset", "kind")]:
        assert mini[section][key] == full[section][key], (section, key)
    for key in ("rotation_deg", "scale_range", "truncation", "lr", "fuse_channels", "decoder_channels"):
        assert mini["siamese"]["paper"][key] == full["siamese"]["paper"][key], key


@pytest.mark.slow
def test_paper_structure_on_a_miniature_voc_berkeley_tree(tmp_path):
    from integration.voc_mini import write_random_vgg16_features, write_voc_mini

    tree = write_voc_mini(tmp_path / "data")
    weights = write_random_vgg16_features(tmp_path / "vgg16_features_random.pth")
    overlay = copy.deepcopy(SIZE_OVERRIDES)
    overlay["dataset"] = {"voc": {"voc_root": tree["voc_root"], "keypoints_root": tree["keypoints_root"],
                                  "voc_url": None, "keypoints_url": None}}
    overlay["backbone"]["weights"] = str(weights)
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(overlay))

    wd = copy_workflow(tmp_path / "wf")
    torch_home = tmp_path / "torch_home"  # empty: the weights must come from backbone.weights
    torch_home.mkdir()
    run_snakemake(wd, configfiles=[REPO / "config" / "config.yaml", PAPER, path], cores=2,
                  extra=TABLES_ONLY, env_extra={"TORCH_HOME": str(torch_home)})
    tables = table_files(wd, RUN)
    assert tables, "no tables were written"
    csvs = {n: b.decode() for n, b in tables.items() if n.endswith(".csv")}
    for name, text in csvs.items():
        header = text.splitlines()[0].split(",")
        assert header[0] == "method" and header[-1] == "mean", (name, header)
        assert {"aeroplane", "cat"} <= set(header), (name, header)
