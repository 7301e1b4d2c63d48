"""Readers of PASCAL VOC 2012 annotations and the Berkeley PASCAL 2011 keypoints.

VOC 2012 (``<voc_root>/Annotations/*.xml``, ``<voc_root>/JPEGImages/*.jpg``): the paper's
per-category training set is the set of images that contain *exactly one* object of the
category. Truncated / difficult objects (``dataset.voc.include_truncated`` /
``include_difficult``):

* every object of the category counts when deciding "exactly one" (an image with one clear
  bird and one difficult bird has two birds and is skipped: the features would mix them);
* the single object is then kept only if it is not truncated (unless ``include_truncated``,
  default true: most VOC objects touching the border are still usable) and not difficult
  (unless ``include_difficult``, default false: VOC itself ignores those in evaluation).

Berkeley keypoints (``<keypoints_root>/<category>/<image>_<k>.xml``, one file per object):
``<voc_id>`` is the 1-based index of the object in the VOC annotation of ``<image>``. Person
files have no ``<voc_id>``; they are joined to the VOC person box with the highest overlap
with ``<visible_bounds>`` (IoU >= 0.5). Coordinates are 1-based and converted to 0-based (x - 1,
y - 1); ``visible="0"`` keypoints keep their coordinates and become visible = 0; keypoints
outside the image by at most 2 px are clipped onto it, farther ones dropped (logged).

The combined reader :func:`load_voc_berkeley` yields per category the single-instance objects
(with their Berkeley keypoints when annotated, else none); the split is 80/20 *by image* (a
hash of the image id, see :func:`sopcorr.data.generic.default_split`), so no image is in both
splits, deterministic and independent of the seed.
"""
from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError
from .generic import default_split
from .model import CategorySpec, Dataset, Instance

log = logging.getLogger(__name__)


@dataclass
class VocObject:
    """index: 1-based position in the annotation; bbox: 0-based (xmin, ymin, xmax, ymax)."""

    index: int
    name: str
    bbox: tuple[float, float, float, float]
    truncated: bool
    difficult: bool
    pose: str = ""


@dataclass
class VocImage:
    image_id: str
    filename: str
    width: int
    height: int
    objects: list[VocObject] = field(default_factory=list)


@dataclass
class BerkeleyObject:
    """One Berkeley keypoint file: keypoints name -> (x, y, visible), 0-based."""

    path: Path
    image_id: str
    category: str
    voc_id: int | None
    keypoints: dict[str, tuple[float, float, int]]
    visible_bounds: tuple[float, float, float, float] | None  # 0-based xmin, ymin, xmax, ymax


def _parse_xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation file not found") from None
    except ET.ParseError as exc:
        raise DatasetError(f"{path}: not valid XML ({exc})") from None


def _text(el: ET.Element, tag: str, path: Path, default=None):
    node = el.find(tag)
    if node is None or node.text is None:
        if default is not None:
            return default
        raise DatasetError(f"{path}: missing <{tag}>")
    return node.text.strip()


def _num(s: str, path: Path, what: str) -> float:
    try:
        return float(s)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: {what}: {s!r} is not a number") from None


def read_voc_annotation(path: str | Path) -> VocImage:
    """Parse one VOC annotation XML (boxes converted to 0-based pixel coordinates)."""
    path = Path(path)
    root = _parse_xml(path)
    filename = _text(root, "filename", path)
    size = root.find("size")
    if size is None:
        raise DatasetError(f"{path}: missing <size>")
    w = int(_num(_text(size, "width", path), path, "size/width"))
    h = int(_num(_text(size, "height", path), path, "size/height"))
    objs = []
    for k, ob in enumerate(root.findall("object"), start=1):
        bb = ob.find("bndbox")
        if bb is None:
            raise DatasetError(f"{path}: object {k}: missing <bndbox>")
        box = tuple(_num(_text(bb, t, path), path, f"object {k} {t}") - 1.0 for t in ("xmin", "ymin", "xmax", "ymax"))
        objs.append(VocObject(
            index=k, name=_text(ob, "name", path),
            bbox=box,  # type: ignore[arg-type]
            truncated=_text(ob, "truncated", path, "0") == "1",
            difficult=_text(ob, "difficult", path, "0") == "1",
            pose=_text(ob, "pose", path, ""),
        ))
    return VocImage(Path(filename).stem, filename, w, h, objs)


def read_berkeley_keypoints(path: str | Path) -> BerkeleyObject:
    """Parse one Berkeley keypoint XML (coordinates converted from 1-based to 0-based)."""
    path = Path(path)
    root = _parse_xml(path)
    image = _text(root, "image", path)
    category = _text(root, "category", path)
    vid = root.find("voc_id")
    voc_id = int(_num(vid.text, path, "voc_id")) if vid is not None and vid.text else None
    kps: dict[str, tuple[float, float, int]] = {}
    kn = root.find("keypoints")
    for k in ([] if kn is None else kn.findall("keypoint")):
        name = k.get("name")
        if not name:
            raise DatasetError(f"{path}: a <keypoint> has no name")
        x = _num(k.get("x"), path, f"keypoint {name} x") - 1.0
        y = _num(k.get("y"), path, f"keypoint {name} y") - 1.0
        vis = k.get("visible", "1")
        if vis not in ("0", "1"):
            raise DatasetError(f"{path}: keypoint {name}: visible={vis!r} is not 0 or 1")
        kps[name] = (x, y, int(vis))
    vb = root.find("visible_bounds")
    bounds = None
    if vb is not None:
        x0 = _num(vb.get("xmin"), path, "visible_bounds xmin") - 1.0
        y0 = _num(vb.get("ymin"), path, "visible_bounds ymin") - 1.0
        bounds = (x0, y0, x0 + _num(vb.get("width"), path, "visible_bounds width"),
                  y0 + _num(vb.get("height"), path, "visible_bounds height"))
    return BerkeleyObject(path, image, category, voc_id, kps, bounds)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def join_voc_object(kp: BerkeleyObject, img: VocImage) -> VocObject | None:
    """The VOC object a Berkeley keypoint file annotates: object number ``voc_id`` (1-based),
    or for files without ``voc_id`` the same-category box overlapping ``visible_bounds`` most
    (IoU >= 0.5). None when there is no such object or its category differs."""
    if kp.voc_id is not None:
        if not 1 <= kp.voc_id <= len(img.objects):
            return None
        ob = img.objects[kp.voc_id - 1]
        return ob if ob.name == kp.category else None
    if kp.visible_bounds is None:
        return None
    cands = [(o, _iou(o.bbox, kp.visible_bounds)) for o in img.objects if o.name == kp.category]
    if not cands:
        return None
    best, score = max(cands, key=lambda t: t[1])
    return best if score >= 0.5 else None


def single_instance_objects(img: VocImage, category: str, include_truncated: bool = True,
                            include_difficult: bool = False) -> VocObject | None:
    """The object of an image with exactly one object of ``category`` (see the module doc for
    the truncated / difficult rules), else None."""
    obs = [o for o in img.objects if o.name == category]
    if len(obs) != 1:
        return None
    o = obs[0]
    if (o.truncated and not include_truncated) or (o.difficult and not include_difficult):
        return None
    return o


def _keypoint_dir(keypoints_root: Path, category: str) -> Path | None:
    for cand in (keypoints_root / category, *sorted(keypoints_root.glob(f"*/{category}"))):
        if cand.is_dir():
            return cand
    return None


def flip_pairs_of(names: list[str]) -> list[tuple[str, str]]:
    """Left/right pairs among keypoint names (prefixes L_/R_, Left_/Right_, L/R before a
    capital, e.g. ``L_Eye``/``R_Eye``, ``Left_Wing_Base``/``Right_Wing_Base``)."""
    pairs = []
    s = set(names)
    for n in sorted(names):
        for lp, rp in (("L_", "R_"), ("Left_", "Right_"), ("Left", "Right")):
            if n.startswith(lp) and rp + n[len(lp):] in s:
                pairs.append((n, rp + n[len(lp):]))
                break
    return pairs


def _clip_keypoints(kps, w, h, where: str, tol: float = 2.0):
    out = {}
    for name, (x, y, v) in kps.items():
        if -0.5 - tol <= x <= w - 0.5 + tol and -0.5 - tol <= y <= h - 0.5 + tol:
            out[name] = (min(max(x, -0.5), w - 0.5), min(max(y, -0.5), h - 0.5), v)
        else:
            log.info("%s: keypoint %s (%.1f, %.1f) outside the %dx%d image: dropped", where, name, x, y, w, h)
    return out


def load_voc_berkeley(voc_root: str | Path, keypoints_root: str | Path, categories: list[str],
                      include_truncated: bool = True, include_difficult: bool = False,
                      train_fraction: float = 0.8, max_instances_per_category: int | None = None,
                      image_set: str | None = "trainval") -> Dataset:
    """Per category: the VOC images with exactly one object of the category, each as one
    instance (id ``<category>/<image_id>``, VOC box, Berkeley keypoints when annotated), split
    80/20 by image. ``image_set``: a list in ``ImageSets/Main/<image_set>.txt`` (used when
    present, else every annotation). Root of the returned Dataset: ``voc_root``."""
    voc_root, keypoints_root = Path(voc_root), Path(keypoints_root)
    ann_dir = voc_root / "Annotations"
    if not ann_dir.is_dir():
        raise DatasetError(f"{ann_dir}: VOC annotations not found (dataset.voc.voc_root: {voc_root}; "
                           "set dataset.voc.voc_url to download VOC 2012)")
    if not keypoints_root.is_dir():
        raise DatasetError(f"{keypoints_root}: Berkeley keypoints not found (dataset.voc.keypoints_root; "
                           "set dataset.voc.keypoints_url to download them)")
    lst = voc_root / "ImageSets" / "Main" / f"{image_set}.txt" if image_set else None
    if lst is not None and lst.is_file():
        ids = [line.split()[0] for line in lst.read_text().splitlines() if line.strip()]
    else:
        ids = sorted(p.stem for p in ann_dir.glob("*.xml"))
    images = {i: read_voc_annotation(ann_dir / f"{i}.xml") for i in ids}
    cats: dict[str, CategorySpec] = {}
    instances: list[Instance] = []
    for cat in categories:
        kdir = _keypoint_dir(keypoints_root, cat)
        kp_by_image: dict[str, dict[str, tuple[float, float, int]]] = {}
        names: set[str] = set()
        if kdir is not None:
            for f in sorted(kdir.glob("*.xml")):
                b = read_berkeley_keypoints(f)
                names.update(b.keypoints)
                img = images.get(b.image_id)
                if img is None:
                    continue
                ob = join_voc_object(b, img)
                if ob is None:
                    log.info("%s: no matching VOC object in %s", f, b.image_id)
                    continue
                kp_by_image.setdefault(b.image_id, {})[ob.index] = b.keypoints  # type: ignore[assignment]
        else:
            log.warning("no Berkeley keypoints for category %s under %s", cat, keypoints_root)
        cat_insts = []
        for iid, img in images.items():
            ob = single_instance_objects(img, cat, include_truncated, include_difficult)
            if ob is None:
                continue
            kps = kp_by_image.get(iid, {}).get(ob.index, {})
            kps = _clip_keypoints(kps, img.width, img.height, f"{cat}/{iid}")  # type: ignore[arg-type]
            x0, y0, x1, y1 = ob.bbox
            bbox = (max(x0, 0.0), max(y0, 0.0), min(x1, img.width - 1.0), min(y1, img.height - 1.0))
            cat_insts.append(Instance(f"{cat}/{iid}", f"JPEGImages/{img.filename}", cat, bbox, kps,
                                      default_split(iid, train_fraction)))
        if not cat_insts:
            raise DatasetError(f"{ann_dir}: no image with exactly one '{cat}' object")
        cat_insts.sort(key=lambda i: i.id)
        if max_instances_per_category and len(cat_insts) > max_instances_per_category:
            import hashlib
            cat_insts = sorted(cat_insts, key=lambda i: hashlib.sha1(i.id.encode()).hexdigest())
            cat_insts = sorted(cat_insts[:max_instances_per_category], key=lambda i: i.id)
        kp_names = sorted(names)
        if not kp_names:
            kp_names = sorted({n for i in cat_insts for n in i.keypoints}) or ["none"]
        cats[cat] = CategorySpec(kp_names, flip_pairs_of(kp_names))
        instances.extend(cat_insts)
    return Dataset("voc2012_berkeley", voc_root, cats, instances, [])
