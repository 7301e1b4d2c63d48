"""The generic dataset format: round trip, defaults, and one clear error per malformed case."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from PIL import Image

from sopcorr.data.generic import default_split, load_dataset, read_image, write_dataset
from sopcorr.errors import DatasetError


def _make(tmp_path, mutate=None, n=3):
    (tmp_path / "images").mkdir(exist_ok=True)
    for k in range(n):
        Image.fromarray(np.full((40, 60, 3), 30 * k, np.uint8)).save(tmp_path / "images" / f"{k}.png")
    data = {
        "name": "toy",
        "categories": {"bird": {"keypoints": ["Beak", "L_Eye", "R_Eye"], "flip_pairs": [["L_Eye", "R_Eye"]]}},
        "instances": [
            {"id": f"bird/{k}", "image": f"images/{k}.png", "category": "bird", "bbox": [1.0, 2.0, 50.0, 30.0],
             "keypoints": {"Beak": [10.0, 5.0, 1], "L_Eye": [59.4, 39.4, 0]}, "split": "train" if k else "test"}
            for k in range(n)
        ],
        "pairs": [["bird/0", "bird/1"]],
    }
    if mutate:
        mutate(data)
    (tmp_path / "dataset.json").write_text(json.dumps(data))
    return tmp_path / "dataset.json"


def test_valid_round_trip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _make(tmp_path)
    ds = load_dataset("dataset.json")
    assert ds.name == "toy" and len(ds.instances) == 3
    assert ds.instances[0].keypoints["L_Eye"] == (59.4, 39.4, 0)
    assert ds.categories["bird"].flip_pairs == [("L_Eye", "R_Eye")]
    out = "sub/copy.json"
    write_dataset(ds, out)
    again = load_dataset(out)          # "root" written relative to the copy's folder
    assert again.instances == ds.instances and again.pairs == ds.pairs
    assert json.loads((tmp_path / out).read_text())["root"] == ".."
    write_dataset(ds, tmp_path / "abs" / "copy.json")  # relative root -> relative path from there
    assert load_dataset(tmp_path / "abs" / "copy.json").instances == ds.instances


def test_defaults_bbox_and_split(tmp_path):
    def m(d):
        for inst in d["instances"]:
            del inst["bbox"], inst["split"]
    ds = load_dataset(_make(tmp_path, m, n=3))
    assert ds.instances[0].bbox == (0.0, 0.0, 59.0, 39.0)
    assert [i.split for i in ds.instances] == [default_split(i.id) for i in ds.instances]
    ids = [f"x/{k}" for k in range(2000)]
    frac = np.mean([default_split(i) == "train" for i in ids])
    assert 0.77 < frac < 0.83
    assert default_split("x/1", 0.8) == default_split("x/1", 0.8)


def test_root_key(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    f = _make(data_dir)
    obj = json.loads(f.read_text())
    obj["root"] = "../data"
    other = tmp_path / "meta"
    other.mkdir()
    (other / "instances.json").write_text(json.dumps(obj))
    ds = load_dataset(other / "instances.json")
    assert ds.path(ds.instances[0].image).is_file()


def _corrupt_image(d, tmp):
    (tmp / "images" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")


CASES = [
    ("bad JSON", None, "not valid JSON"),
    ("missing image", lambda d: d["instances"][1].update(image="images/nope.png"), "bird/1"),
    ("keypoint outside", lambda d: d["instances"][2]["keypoints"].update(Beak=[60.0, 3.0, 1]), "keypoints.Beak"),
    ("bbox inverted", lambda d: d["instances"][0].update(bbox=[30.0, 2.0, 10.0, 20.0]), "inverted"),
    ("bbox outside", lambda d: d["instances"][0].update(bbox=[0.0, 0.0, 70.0, 20.0]), "outside"),
    ("duplicate id", lambda d: d["instances"][2].update(id="bird/0"), "duplicate instance id"),
    ("unknown category in instance", lambda d: d["instances"][1].update(category="dog"), "unknown category 'dog'"),
    ("unknown id in pair", lambda d: d["pairs"].append(["bird/0", "cat/9"]), "cat/9"),
    ("pair across categories", lambda d: (d["categories"].update(cat={"keypoints": ["Nose"]}),
                                          d["instances"][2].update(category="cat", keypoints={}),
                                          d["pairs"].append(["bird/0", "bird/2"])),
     "different categories"),
    ("category without instances", lambda d: d["categories"].update(cat={"keypoints": ["Nose"]}), "category 'cat' has no instances"),
    ("undeclared keypoint", lambda d: d["instances"][1]["keypoints"].update(Tail=[1.0, 1.0, 1]), "keypoints.Tail"),
    ("bad visible flag", lambda d: d["instances"][1]["keypoints"].update(Beak=[1.0, 1.0, 2]), "visible flag"),
    ("bad split", lambda d: d["instances"][1].update(split="val"), "field 'split'"),
    ("flip pair undeclared", lambda d: d["categories"]["bird"].update(flip_pairs=[["L_Eye", "R_Ear"]]), "R_Ear"),
    ("no categories", lambda d: d.update(categories={}), "field 'categories'"),
    ("unknown instance key", lambda d: d["instances"][0].update(colour="red"), "colour"),
]


@pytest.mark.parametrize("label,mutate,needle", CASES, ids=[c[0] for c in CASES])
def test_rejects_malformed(tmp_path, label, mutate, needle):
    f = _make(tmp_path, mutate)
    if label == "bad JSON":
        f.write_text(f.read_text()[:-5])
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path)
    msg = str(err.value)
    assert needle in msg
    assert "dataset.json" in msg and "\n" not in msg


def test_rejects_corrupt_image(tmp_path):
    f = _make(tmp_path)
    (tmp_path / "images" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(DatasetError, match=r"instance 'bird/1'.*field 'image'.*corrupt"):
        load_dataset(f)
    # a truncated image body: the header opens, verify() fails
    good = tmp_path / "images" / "2.png"
    raw = good.read_bytes()
    good.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match="2.png"):
        read_image(good)


def test_read_image_rgb(tmp_path):
    Image.fromarray(np.full((5, 7), 9, np.uint8)).save(tmp_path / "g.png")
    arr = read_image(tmp_path / "g.png")
    assert arr.shape == (5, 7, 3) and arr.dtype == np.uint8 and arr[0, 0, 2] == 9
    with pytest.raises(DatasetError, match="not found"):
        read_image(tmp_path / "missing.jpg")


def test_check_images_false_skips_files(tmp_path):
    ds = load_dataset(_make(tmp_path, lambda d: d["instances"][1].update(image="images/nope.png")), check_images=False)
    assert len(ds.instances) == 3
