"""The generic dataset format: load (with full validation) and write ``dataset.json``.

The format (see ``docs/ARCHITECTURE.md`` and the README's "Bring your own data")::

    {"name": ..., "root": optional folder image paths are relative to,
     "categories": {cat: {"keypoints": [names], "flip_pairs": [[left, right], ...]}},
     "instances": [{"id", "image", "category", "bbox"?, "keypoints", "split"?,
                    "parts"?, "canonical"?}],
     "pairs": [[source_id, target_id], ...]?}

Coordinates are 0-based pixels (x right, y down, the centre of the top-left pixel at (0, 0)).
A point is inside an image of width W and height H when ``-0.5 <= x <= W - 0.5`` and
``-0.5 <= y <= H - 0.5`` (the pixel area). Every violation raises
:class:`~sopcorr.errors.DatasetError` naming the file, the instance id and the field.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ..io import atomic_path
from .model import CategorySpec, Dataset, Instance

SPLITS = ("train", "test")
_INSTANCE_KEYS = {"id", "image", "category", "bbox", "keypoints", "split", "parts", "canonical"}
_TOP_KEYS = {"name", "root", "categories", "instances", "pairs", "info"}


def default_split(instance_id: str, train_fraction: float = 0.8) -> str:
    """Deterministic split of an instance id: ``"train"`` when a hash of the id, read as a
    number in [0, 1), is below ``train_fraction``; else ``"test"``."""
    h = int(hashlib.sha1(instance_id.encode("utf-8")).hexdigest()[:8], 16) / 2**32
    return "train" if h < train_fraction else "test"


def dataset_json_path(path: str | Path) -> Path:
    """``path`` itself when it is a file (or ends in .json), else ``path/dataset.json``."""
    p = Path(path)
    if p.suffix == ".json" or p.is_file():
        return p
    return p / "dataset.json"


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file from its header, after verifying the file.

    Raises DatasetError naming the file when it is missing, unreadable or corrupt."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            w, h = im.size
            im.verify()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable or corrupt image ({exc})") from None
    return h, w


def read_image(path: str | Path) -> np.ndarray:
    """The image at ``path`` as a uint8 (H, W, 3) RGB array (grey and RGBA are converted).

    Raises DatasetError naming the file when it is missing or cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable or corrupt image ({exc})") from None
    return arr


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class _Checker:
    """Builds error messages that name the file, the instance and the field."""

    def __init__(self, file: Path):
        self.file = file

    def fail(self, msg: str, inst: str | None = None, fld: str | None = None):
        where = [str(self.file)]
        if inst is not None:
            where.append(f"instance '{inst}'")
        if fld is not None:
            where.append(f"field '{fld}'")
        raise DatasetError(": ".join(where) + ": " + msg)


def _parse_categories(raw, chk: _Checker) -> dict[str, CategorySpec]:
    if not isinstance(raw, dict) or not raw:
        chk.fail("must be a non-empty mapping of category name -> {keypoints, flip_pairs}", fld="categories")
    cats: dict[str, CategorySpec] = {}
    for name, spec in raw.items():
        f = f"categories.{name}"
        if not isinstance(spec, dict):
            chk.fail("must be a mapping with 'keypoints'", fld=f)
        extra = set(spec) - {"keypoints", "flip_pairs"}
        if extra:
            chk.fail(f"unknown key '{sorted(extra)[0]}'", fld=f)
        kps = spec.get("keypoints")
        if not isinstance(kps, list) or not kps or not all(isinstance(k, str) and k for k in kps):
            chk.fail("must be a non-empty list of keypoint names", fld=f + ".keypoints")
        if len(set(kps)) != len(kps):
            dup = next(k for k in kps if kps.count(k) > 1)
            chk.fail(f"duplicate keypoint name '{dup}'", fld=f + ".keypoints")
        pairs_raw = spec.get("flip_pairs", [])
        if not isinstance(pairs_raw, list):
            chk.fail("must be a list of [left, right] pairs", fld=f + ".flip_pairs")
        pairs = []
        for pr in pairs_raw:
            if not (isinstance(pr, list) and len(pr) == 2 and all(isinstance(x, str) for x in pr)):
                chk.fail(f"{pr!r} is not a [left, right] pair of names", fld=f + ".flip_pairs")
            for x in pr:
                if x not in kps:
                    chk.fail(f"keypoint '{x}' is not declared in keypoints", fld=f + ".flip_pairs")
            if pr[0] == pr[1]:
                chk.fail(f"pair {pr!r} names the same keypoint twice", fld=f + ".flip_pairs")
            pairs.append((pr[0], pr[1]))
        cats[name] = CategorySpec(list(kps), pairs)
    return cats


def _parse_instance(raw, idx: int, cats: dict[str, CategorySpec], chk: _Checker,
                    train_fraction: float) -> Instance:
    if not isinstance(raw, dict):
        chk.fail("must be a mapping", fld=f"instances[{idx}]")
    iid = raw.get("id")
    if not isinstance(iid, str) or not iid:
        chk.fail("missing or not a non-empty string", inst=f"#{idx}", fld="id")
    extra = set(raw) - _INSTANCE_KEYS
    if extra:
        chk.fail(f"unknown key '{sorted(extra)[0]}'", inst=iid, fld=sorted(extra)[0])
    image = raw.get("image")
    if not isinstance(image, str) or not image:
        chk.fail("missing or not a path string", inst=iid, fld="image")
    cat = raw.get("category")
    if not isinstance(cat, str) or cat not in cats:
        chk.fail(f"unknown category {cat!r} (declared: {', '.join(sorted(cats))})", inst=iid, fld="category")
    bbox = raw.get("bbox")
    if bbox is not None:
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            chk.fail(f"{bbox!r} is not [xmin, ymin, xmax, ymax] numbers", inst=iid, fld="bbox")
        if bbox[0] > bbox[2] or bbox[1] > bbox[3]:
            chk.fail(f"{bbox!r} is inverted (xmin > xmax or ymin > ymax)", inst=iid, fld="bbox")
        bbox = tuple(float(v) for v in bbox)
    kps_raw = raw.get("keypoints", {})
    if not isinstance(kps_raw, dict):
        chk.fail("must be a mapping name -> [x, y, visible]", inst=iid, fld="keypoints")
    declared = cats[cat].keypoints
    kps: dict[str, tuple[float, float, int]] = {}
    for name, val in kps_raw.items():
        f = f"keypoints.{name}"
        if name not in declared:
            chk.fail(f"keypoint name '{name}' is not declared for category '{cat}'", inst=iid, fld=f)
        if not (isinstance(val, list) and len(val) == 3 and _is_number(val[0]) and _is_number(val[1])):
            chk.fail(f"{val!r} is not [x, y, visible]", inst=iid, fld=f)
        vis = val[2]
        if isinstance(vis, bool) or vis not in (0, 1):
            chk.fail(f"visible flag {vis!r} is not 0 or 1", inst=iid, fld=f)
        kps[name] = (float(val[0]), float(val[1]), int(vis))
    split = raw.get("split")
    if split is None:
        split = default_split(iid, train_fraction)
    elif split not in SPLITS:
        chk.fail(f"{split!r} is not 'train' or 'test'", inst=iid, fld="split")
    opt = {}
    for key in ("parts", "canonical"):
        v = raw.get(key)
        if v is not None and (not isinstance(v, str) or not v):
            chk.fail("not a path string", inst=iid, fld=key)
        opt[key] = v
    return Instance(iid, image, cat, bbox, kps, split, opt["parts"], opt["canonical"])


def validate_images(ds: Dataset, file: str | Path | None = None) -> None:
    """Check every image (exists, decodable header), part map and canonical map of ``ds`` and
    that keypoints and boxes lie inside their image. Fills in missing boxes with the whole
    image. Raises DatasetError naming the file, instance and field."""
    chk = _Checker(Path(file) if file else Path(ds.root))
    for inst in ds.instances:
        img_path = ds.path(inst.image)
        try:
            h, w = image_size(img_path)
        except DatasetError as err:
            chk.fail(str(err), inst=inst.id, fld="image")
        _check_geometry(inst, h, w, chk)
        if inst.parts is not None:
            p = ds.path(inst.parts)
            try:
                ph, pw = image_size(p)
            except DatasetError as err:
                chk.fail(str(err), inst=inst.id, fld="parts")
            if (ph, pw) != (h, w):
                chk.fail(f"{p}: size {pw}x{ph} differs from the image's {w}x{h}", inst=inst.id, fld="parts")
        if inst.canonical is not None:
            p = ds.path(inst.canonical)
            if not p.is_file():
                chk.fail(f"{p}: file not found", inst=inst.id, fld="canonical")
            try:
                arr = np.load(p, mmap_mode="r")
            except (OSError, ValueError) as exc:
                chk.fail(f"{p}: not a readable .npy ({exc})", inst=inst.id, fld="canonical")
            if arr.shape != (h, w, 2):
                chk.fail(f"{p}: shape {arr.shape} is not ({h}, {w}, 2)", inst=inst.id, fld="canonical")


def _check_geometry(inst: Instance, h: int, w: int, chk: _Checker) -> None:
    lo_x, hi_x, lo_y, hi_y = -0.5, w - 0.5, -0.5, h - 0.5
    if inst.bbox is None:
        inst.bbox = (0.0, 0.0, float(w - 1), float(h - 1))
    x0, y0, x1, y1 = inst.bbox
    if x0 < lo_x or y0 < lo_y or x1 > hi_x or y1 > hi_y:
        chk.fail(f"{list(inst.bbox)} lies outside the {w}x{h} image", inst=inst.id, fld="bbox")
    for name, (x, y, _v) in inst.keypoints.items():
        if not (lo_x <= x <= hi_x and lo_y <= y <= hi_y):
            chk.fail(f"({x}, {y}) lies outside the {w}x{h} image", inst=inst.id, fld=f"keypoints.{name}")


def parse_dataset(data, file: str | Path, root: str | Path, train_fraction: float = 0.8,
                  require_instances: bool = True) -> Dataset:
    """Validate a decoded ``dataset.json`` object (no file access); ``file`` names it in errors."""
    chk = _Checker(Path(file))
    if not isinstance(data, dict):
        chk.fail("the top level must be a JSON object")
    extra = set(data) - _TOP_KEYS
    if extra:
        chk.fail(f"unknown top-level key '{sorted(extra)[0]}'", fld=sorted(extra)[0])
    name = data.get("name", Path(root).name)
    if not isinstance(name, str):
        chk.fail("must be a string", fld="name")
    cats = _parse_categories(data.get("categories"), chk)
    raw_insts = data.get("instances")
    if not isinstance(raw_insts, list):
        chk.fail("must be a list of instances", fld="instances")
    instances: list[Instance] = []
    seen: set[str] = set()
    for i, r in enumerate(raw_insts):
        inst = _parse_instance(r, i, cats, chk, train_fraction)
        if inst.id in seen:
            chk.fail("duplicate instance id", inst=inst.id, fld="id")
        seen.add(inst.id)
        instances.append(inst)
    if require_instances:
        counts = {c: 0 for c in cats}
        for inst in instances:
            counts[inst.category] += 1
        empty = [c for c, n in counts.items() if n == 0]
        if empty:
            chk.fail(f"category '{empty[0]}' has no instances", fld=f"categories.{empty[0]}")
    by_id = {i.id: i for i in instances}
    pairs_raw = data.get("pairs", [])
    if not isinstance(pairs_raw, list):
        chk.fail("must be a list of [source_id, target_id] pairs", fld="pairs")
    pairs = []
    for k, pr in enumerate(pairs_raw):
        f = f"pairs[{k}]"
        if not (isinstance(pr, list) and len(pr) == 2 and all(isinstance(x, str) for x in pr)):
            chk.fail(f"{pr!r} is not a [source_id, target_id] pair", fld=f)
        for x in pr:
            if x not in by_id:
                chk.fail(f"unknown instance id '{x}'", inst=x, fld=f)
        ca, cb = by_id[pr[0]].category, by_id[pr[1]].category
        if ca != cb:
            chk.fail(f"pairs instances of different categories ('{ca}' and '{cb}')", inst=pr[0], fld=f)
        pairs.append((pr[0], pr[1]))
    return Dataset(name, Path(root), cats, instances, pairs)


def load_dataset(path: str | Path, check_images: bool = True, train_fraction: float = 0.8) -> Dataset:
    """Load and validate a dataset.

    path:           a ``dataset.json`` (or any .json in the format, e.g. ``instances.json``)
                    or the folder holding ``dataset.json``
    check_images:   also open every image header (and part / canonical maps), verify it, and
                    check keypoints and boxes against the image size; missing boxes become the
                    whole image. Without it, missing boxes stay ``None``.
    train_fraction: fraction of instances put in "train" when an instance has no ``split``
                    (deterministic by a hash of the id, see :func:`default_split`).

    A top-level ``"root"`` is the folder image paths are relative to (relative to the JSON's
    folder unless absolute); default: the JSON's folder. Raises DatasetError naming the file,
    instance id and field at fault.
    """
    file = dataset_json_path(path)
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise DatasetError(f"{file}: dataset file not found") from None
    except OSError as exc:
        raise DatasetError(f"{file}: cannot read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{file}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    root = file.parent
    if isinstance(data, dict) and "root" in data:
        if not isinstance(data["root"], str):
            raise DatasetError(f"{file}: field 'root': must be a path string")
        r = Path(data["root"])
        root = r if r.is_absolute() else Path(os.path.normpath(file.parent / r))
    ds = parse_dataset(data, file, root, train_fraction)
    if check_images:
        validate_images(ds, file)
    return ds


def dataset_to_dict(ds: Dataset, root: str | None = None) -> dict:
    """The JSON object of ``ds`` (``root`` written as the top-level "root" when given)."""
    out: dict = {"name": ds.name}
    if root is not None:
        out["root"] = root
    out["categories"] = {
        c: {"keypoints": list(s.keypoints), "flip_pairs": [list(p) for p in s.flip_pairs]}
        for c, s in ds.categories.items()
    }
    insts = []
    for i in ds.instances:
        d: dict = {"id": i.id, "image": i.image, "category": i.category}
        if i.bbox is not None:
            d["bbox"] = [round(float(v), 3) for v in i.bbox]
        d["keypoints"] = {n: [round(float(x), 3), round(float(y), 3), int(v)] for n, (x, y, v) in i.keypoints.items()}
        d["split"] = i.split
        if i.parts is not None:
            d["parts"] = i.parts
        if i.canonical is not None:
            d["canonical"] = i.canonical
        insts.append(d)
    out["instances"] = insts
    out["pairs"] = [list(p) for p in ds.pairs]
    return out


def write_dataset(ds: Dataset, path: str | Path) -> Path:
    """Write ``ds`` atomically to ``path`` (a .json file, or a folder -> folder/dataset.json).

    When the JSON's folder is not ``ds.root``, a top-level "root" is written: absolute when
    ``ds.root`` is absolute, else relative to the JSON's folder. Returns the file written."""
    file = dataset_json_path(path)
    root = None
    here = Path(os.path.normpath(file.parent))
    droot = Path(os.path.normpath(ds.root))
    if droot != here:
        root = str(droot) if droot.is_absolute() else os.path.relpath(droot, here)
    obj = dataset_to_dict(ds, root)
    with atomic_path(file) as tmp:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=1)
            fh.write("\n")
    return file
