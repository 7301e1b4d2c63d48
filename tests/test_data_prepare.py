"""prepare_category, the summary table and the contact sheet on the tiny synthetic set."""
from __future__ import annotations

import json

import pytest

from sopcorr.data.generic import load_dataset
from sopcorr.data.prepare import prepare_category, source_dataset, summarize
from sopcorr.errors import DatasetError
from sopcorr.viz.contact import contact_sheet


def test_prepare_and_summarize(tiny_synthetic, tmp_path):
    cfg = {"kind": "synthetic", "train_fraction": 0.8}
    ds = source_dataset(cfg, tiny_synthetic.root / "dataset.json")
    files = []
    for cat in ("car", "bird"):
        out = tmp_path / "data" / cat / "instances.json"
        prepare_category(ds, cat, out)
        files.append(out)
        obj = json.loads(out.read_text())
        assert list(obj["categories"]) == [cat] and "root" in obj
        sub = load_dataset(out)                     # images resolve through "root"
        assert [i.id for i in sub.instances] == sorted(i.id for i in ds.instances if i.category == cat)
        assert all(a.startswith(cat + "/") and b.startswith(cat + "/") for a, b in sub.pairs)
    df = summarize(files).set_index("category")
    for cat in ("car", "bird"):
        insts = [i for i in ds.instances if i.category == cat]
        ann = sum(len(i.keypoints) for i in insts)
        vis = sum(v for i in insts for *_, v in i.keypoints.values())
        row = df.loc[cat]
        assert row["instances"] == len(insts) and row["train"] + row["test"] == len(insts)
        assert row["annotated"] == ann and row["visible"] == vis
        assert row["visible_fraction"] == pytest.approx(vis / ann, abs=1e-4)
    with pytest.raises(DatasetError, match="category 'dog'"):
        prepare_category(ds, "dog", tmp_path / "x.json")


def test_contact_sheet(tiny_synthetic, tmp_path):
    out = tmp_path / "sheet.png"
    contact_sheet(tiny_synthetic, "bird", out, max_images=4, show_parts=True)
    from PIL import Image

    with Image.open(out) as im:
        assert im.size[0] > 300 and im.size[1] > 200
