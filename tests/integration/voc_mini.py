"""A miniature PASCAL VOC 2012 + Berkeley keypoints tree in the real formats (see
``../shared/fixtures/``): ``VOCdevkit/VOC2012/{JPEGImages,Annotations,ImageSets/Main}`` and
``voc2011_keypoints/<category>/<image>_<k>.xml``, with generated JPEGs, for running the paper
configuration end to end on a CPU (tests/test_paper_config.py).

Per category it writes images with exactly one object of the category (used), plus one image
with two objects of the category (skipped by the single-instance rule) and one with an extra
person (the category's object is still single, so it is used). Image ids are chosen so that both
the train and the test split (a hash of the id) hold images of every category.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

#: keypoint names as the Berkeley files spell them
KEYPOINTS = {
    "aeroplane": ["NoseTip", "L_WingTip", "R_WingTip", "Top_Rudder", "Bot_Rudder"],
    "cat": ["L_Eye", "R_Eye", "Nose", "L_EarBase", "R_EarBase"],
}

_VOC_XML = """<annotation>
\t<folder>VOC2012</folder>
\t<filename>{image_id}.jpg</filename>
\t<source>
\t\t<database>The VOC2008 Database</database>
\t\t<annotation>PASCAL VOC2008</annotation>
\t\t<image>flickr</image>
\t</source>
\t<size>
\t\t<width>{width}</width>
\t\t<height>{height}</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>0</segmented>
{objects}</annotation>
"""
_VOC_OBJECT = """\t<object>
\t\t<name>{name}</name>
\t\t<pose>Unspecified</pose>
\t\t<truncated>0</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>{xmin}</xmin>
\t\t\t<ymin>{ymin}</ymin>
\t\t\t<xmax>{xmax}</xmax>
\t\t\t<ymax>{ymax}</ymax>
\t\t</bndbox>
\t</object>
"""
_KP_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotation>
\t<image>{image_id}</image>
\t<voc_id>{voc_id}</voc_id>
\t<category>{category}</category>
\t<visible_bounds height="{h:.2f}" width="{w:.2f}" xmin="{xmin:.2f}" ymin="{ymin:.2f}"/>
\t<keypoints>
{keypoints}\t</keypoints>
</annotation>
"""


def _ids_with_both_splits(category_index: int, n: int, n_test: int, n_extra: int = 2):
    """``n`` ids of which ``n_test`` fall in the test split, and ``n_extra`` more train ids."""
    from sopcorr.data.generic import default_split

    train, test, extra = [], [], []
    k = 0
    while len(train) < n - n_test or len(test) < n_test or len(extra) < n_extra:
        iid = f"2008_{category_index:02d}{k:04d}"
        k += 1
        split = default_split(iid)
        if split == "test" and len(test) < n_test:
            test.append(iid)
        elif split == "train" and len(train) < n - n_test:
            train.append(iid)
        elif split == "train" and len(extra) < n_extra:
            extra.append(iid)
    return sorted(train + test), extra


def write_voc_mini(root: Path, categories=("aeroplane", "cat"), per_category: int = 6,
                   n_test: int = 2, seed: int = 0) -> dict:
    """Write the tree under ``root``; returns {"voc_root", "keypoints_root", "images"}."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    voc = Path(root) / "VOCdevkit" / "VOC2012"
    kproot = Path(root) / "voc2011_keypoints"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    all_ids = []

    def box(w, h):
        x0 = int(rng.integers(2, w // 4)); y0 = int(rng.integers(2, h // 4))
        x1 = int(rng.integers(3 * w // 4, w - 2)); y1 = int(rng.integers(3 * h // 4, h - 2))
        return x0, y0, x1, y1

    for ci, cat in enumerate(categories):
        used, extra = _ids_with_both_splits(ci, per_category, n_test)
        for j, iid in enumerate(used + extra):
            w, h = int(rng.integers(100, 140)), int(rng.integers(80, 110))
            img = Image.fromarray((rng.random((h, w, 3)) * 90).astype(np.uint8))
            draw = ImageDraw.Draw(img)
            # 0-based pixel boxes drawn; VOC files store 1-based coordinates
            x0, y0, x1, y1 = box(w, h)
            colour = tuple(int(v) for v in rng.integers(110, 256, size=3))
            draw.ellipse([x0, y0, x1, y1], fill=colour)
            objects = [(cat, (x0, y0, x1, y1))]
            if j == per_category:  # a second object of the category: image skipped
                objects.append((cat, (x0 + 3, y0 + 3, x1 - 3, y1 - 3)))
            if j == per_category + 1:  # an extra person: still one object of the category
                objects.append(("person", (1, 1, 12, 30)))
            img.save(voc / "JPEGImages" / f"{iid}.jpg", quality=92)
            xml_objs = "".join(_VOC_OBJECT.format(name=n, xmin=a + 1, ymin=b + 1, xmax=c + 1, ymax=d + 1)
                               for n, (a, b, c, d) in objects)
            (voc / "Annotations" / f"{iid}.xml").write_text(
                _VOC_XML.format(image_id=iid, width=w, height=h, objects=xml_objs))
            # Berkeley keypoints of the first object (1-based, visible="1")
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            pts = [(x1, cy), (cx, y0), (cx, y1), (x0, y0 + (y1 - y0) / 4), (x0, cy)]
            kps = "".join(
                f'\t\t<keypoint name="{name}" visible="1" x="{x + 1:.2f}" y="{y + 1:.2f}" z="0.00"/>\n'
                for name, (x, y) in zip(KEYPOINTS[cat], pts))
            (kproot / cat).mkdir(parents=True, exist_ok=True)
            (kproot / cat / f"{iid}_1.xml").write_text(_KP_XML.format(
                image_id=iid, voc_id=1, category=cat, h=y1 - y0, w=x1 - x0, xmin=x0 + 1,
                ymin=y0 + 1, keypoints=kps))
            all_ids.append(iid)
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(sorted(all_ids)) + "\n")
    return {"voc_root": str(voc), "keypoints_root": str(kproot), "images": sorted(all_ids)}


def write_random_vgg16_features(path: Path, seed: int = 0) -> Path:
    """A randomly initialised VGG16 *features* state dict (what backbone.weights accepts for
    dense features; ~59 MB instead of 528 MB with the classifier)."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.vgg16(weights=None)
    torch.save(model.features.state_dict(), path)
    return Path(path)
