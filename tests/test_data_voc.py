"""VOC 2012 and Berkeley keypoint readers on real annotation files (tests/fixtures) and on a
small VOC-like tree built here; downloads from file:// archives."""
from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sopcorr.data import voc
from sopcorr.data.download import download_archive, fetch, unpack
from sopcorr.data.generic import load_dataset
from sopcorr.data.prepare import prepare_category
from sopcorr.errors import DatasetError

FIX = Path(__file__).parent / "fixtures"
KP = FIX / "berkeley_keypoints"


def test_berkeley_reader_converts_to_zero_based():
    b = voc.read_berkeley_keypoints(KP / "aeroplane" / "2007_000032_1.xml")
    assert (b.image_id, b.category, b.voc_id) == ("2007_000032", "aeroplane", 1)
    assert b.keypoints["NoseTip"] == pytest.approx((212.70, 156.28, 1))
    assert b.keypoints["R_WingTip"] == pytest.approx((106.97, 127.62, 1))
    assert len(b.keypoints) == 14
    assert b.visible_bounds == pytest.approx((103.0, 77.0, 374.0, 182.0))
    b2 = voc.read_berkeley_keypoints(KP / "aeroplane" / "2007_000032_2.xml")
    assert b2.voc_id == 2 and b2.keypoints["Top_Rudder"] == pytest.approx((192.29, 88.92, 1))
    assert "R_WingTip" not in b2.keypoints          # not annotated: absent


def test_berkeley_person_without_voc_id_keeps_invisible():
    b = voc.read_berkeley_keypoints(KP / "person" / "2008_002434_0.xml")
    assert b.voc_id is None
    assert b.keypoints["L_Ankle"] == pytest.approx((104.68, 181.95, 0))
    assert b.keypoints["Nose"] == pytest.approx((132.83, 34.85, 1))
    assert len(b.keypoints) == 17


def test_voc_annotation_and_voc_id_join():
    img = voc.read_voc_annotation(FIX / "voc2012" / "Annotations" / "2007_000032.xml")
    assert (img.image_id, img.width, img.height) == ("2007_000032", 500, 281)
    assert [o.name for o in img.objects] == ["aeroplane", "aeroplane", "person", "person"]
    assert img.objects[0].bbox == (103.0, 77.0, 374.0, 182.0)
    for k in (1, 2):
        b = voc.read_berkeley_keypoints(KP / "aeroplane" / f"2007_000032_{k}.xml")
        ob = voc.join_voc_object(b, img)
        assert ob is img.objects[k - 1]
        # every keypoint of the joined object lies in (or at the edge of) its VOC box
        x0, y0, x1, y1 = ob.bbox
        for x, y, _ in b.keypoints.values():
            assert x0 - 2 <= x <= x1 + 2 and y0 - 2 <= y <= y1 + 2
    # two aeroplanes and two persons: not a single-instance image for either
    assert voc.single_instance_objects(img, "aeroplane") is None
    assert voc.single_instance_objects(img, "person") is None


def test_flip_pairs_of_berkeley_names():
    b = voc.read_berkeley_keypoints(KP / "aeroplane" / "2007_000032_1.xml")
    pairs = voc.flip_pairs_of(sorted(b.keypoints))
    assert ("L_WingTip", "R_WingTip") in pairs
    assert ("Left_Wing_Base", "Right_Wing_Base") in pairs
    assert ("L_Stabilizer", "R_Stabilizer") in pairs


def _obj(name, box, truncated=0, difficult=0):
    x0, y0, x1, y1 = box
    return (f"<object><name>{name}</name><pose>Left</pose><truncated>{truncated}</truncated>"
            f"<difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")


def make_voc_tree(root: Path, n_birds: int = 20) -> None:
    """A VOC-like tree: the real 2007_000032 annotation, a single-cat image matching the
    Berkeley cat fixture, n_birds single-bird images (one truncated, one difficult) and an image
    with two birds."""
    ann, jpg = root / "Annotations", root / "JPEGImages"
    ann.mkdir(parents=True)
    jpg.mkdir()
    shutil.copy(FIX / "voc2012" / "Annotations" / "2007_000032.xml", ann)
    images = {"2007_000032": (500, 281, "")}
    images["2010_000218"] = (500, 375, _obj("cat", (1, 38, 500, 332)) + _obj("person", (10, 10, 50, 90)))
    for k in range(n_birds):
        extra = dict(truncated=int(k == 0), difficult=int(k == 1))
        images[f"2009_{k:06d}"] = (120, 90, _obj("bird", (10, 10, 60 + k, 70), **extra))
    images["2011_000001"] = (120, 90, _obj("bird", (5, 5, 40, 40)) + _obj("bird", (50, 5, 90, 40)))
    for iid, (w, h, objs) in images.items():
        if iid != "2007_000032":
            (ann / f"{iid}.xml").write_text(
                f"<annotation><filename>{iid}.jpg</filename><size><width>{w}</width><height>{h}</height>"
                f"<depth>3</depth></size>{objs}</annotation>")
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(jpg / f"{iid}.jpg")


def make_keypoint_tree(root: Path) -> None:
    shutil.copytree(KP, root)
    (root / "bird").mkdir()
    (root / "bird" / "2009_000003_1.xml").write_text(
        "<annotation><image>2009_000003</image><voc_id>1</voc_id><category>bird</category><keypoints>"
        '<keypoint name="Beak" visible="1" x="12" y="20"/><keypoint name="L_Eye" visible="0" x="15" y="18"/>'
        '<keypoint name="R_Eye" visible="1" x="200" y="18"/></keypoints></annotation>')


def test_load_voc_berkeley(tmp_path):
    make_voc_tree(tmp_path / "VOC2012")
    make_keypoint_tree(tmp_path / "kp")
    ds = voc.load_voc_berkeley(tmp_path / "VOC2012", tmp_path / "kp", ["cat", "bird"])
    cats = [i for i in ds.instances if i.category == "cat"]
    assert [i.id for i in cats] == ["cat/2010_000218"]
    cat = cats[0]
    assert cat.bbox == (0.0, 37.0, 499.0, 331.0)
    assert cat.keypoints["L_Eye"] == pytest.approx((231.28, 122.59, 1))
    assert cat.keypoints["L_F_Paw"] == pytest.approx((482.46, 167.26, 1))
    assert ("L_Eye", "R_Eye") in ds.categories["cat"].flip_pairs
    birds = {i.id: i for i in ds.instances if i.category == "bird"}
    # one difficult bird dropped (default), truncated kept, the two-bird image skipped
    assert "bird/2009_000001" not in birds and "bird/2009_000000" in birds
    assert "bird/2011_000001" not in birds and len(birds) == 19
    b3 = birds["bird/2009_000003"]
    assert b3.keypoints["Beak"] == (11.0, 19.0, 1) and b3.keypoints["L_Eye"] == (14.0, 17.0, 0)
    assert "R_Eye" not in b3.keypoints        # far outside the 120 px wide image: dropped
    # split by image, deterministic, both splits present
    splits = {i.id: i.split for i in ds.instances}
    again = voc.load_voc_berkeley(tmp_path / "VOC2012", tmp_path / "kp", ["cat", "bird"])
    assert splits == {i.id: i.split for i in again.instances}
    assert set(splits.values()) == {"train", "test"}
    by_image: dict[str, set[str]] = {}
    for i in ds.instances:
        by_image.setdefault((i.category, i.image), set()).add(i.split)
    assert all(len(s) == 1 for s in by_image.values())
    # the options
    ds2 = voc.load_voc_berkeley(tmp_path / "VOC2012", tmp_path / "kp", ["bird"], include_truncated=False,
                                include_difficult=True, max_instances_per_category=5)
    ids = {i.id for i in ds2.instances}
    assert len(ids) == 5 and "bird/2009_000000" not in ids
    # prepared and reloaded through the generic loader (images exist, keypoints inside)
    out = tmp_path / "results" / "data" / "cat" / "instances.json"
    prepare_category(ds, "cat", out)
    back = load_dataset(out)
    assert back.instances[0].keypoints == cat.keypoints
    assert back.path(back.instances[0].image).is_file()


def test_load_voc_berkeley_missing_folders(tmp_path):
    with pytest.raises(DatasetError, match="voc_root"):
        voc.load_voc_berkeley(tmp_path / "nope", tmp_path, ["cat"])


def _tar(src: Path, out: Path, arcname: str) -> str:
    with tarfile.open(out, "w:gz") as tf:
        tf.add(src, arcname=arcname)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def test_download_archive_file_url(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("hello")
    digest = _tar(src, tmp_path / "pkg.tgz", "pkg")
    url = (tmp_path / "pkg.tgz").as_uri()
    dest = tmp_path / "resources"
    info = download_archive(url, dest, tmp_path / "marker.json", sha256=digest)
    assert (dest / "pkg" / "sub" / "a.txt").read_text() == "hello"
    assert info["sha256"] == digest and json.loads((tmp_path / "marker.json").read_text())["entries"] == ["pkg"]
    assert sorted(p.name for p in dest.iterdir()) == ["pkg"]      # no archive or temp left
    # again: replaces the unpacked folder
    download_archive(url, dest, tmp_path / "marker.json", sha256=digest.upper())
    assert (dest / "pkg" / "sub" / "a.txt").is_file()


def test_download_rejects_bad_checksum_and_url(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("x")
    _tar(src, tmp_path / "pkg.tgz", "pkg")
    dest = tmp_path / "resources"
    with pytest.raises(DatasetError, match="checksum mismatch"):
        download_archive((tmp_path / "pkg.tgz").as_uri(), dest, tmp_path / "m.json", sha256="0" * 64)
    assert not (tmp_path / "m.json").exists() and not (dest / "pkg").exists()
    assert list(dest.iterdir()) == []
    with pytest.raises(DatasetError, match="download failed"):
        fetch((tmp_path / "missing.tgz").as_uri(), tmp_path / "x")
    (tmp_path / "junk.tgz").write_bytes(b"not a tar")
    with pytest.raises(DatasetError, match="cannot unpack"):
        unpack(tmp_path / "junk.tgz", tmp_path / "out")
