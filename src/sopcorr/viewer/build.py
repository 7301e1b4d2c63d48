"""Build a run's interactive correspondence viewer: ``results/<run>/viewer/``.

What :func:`write_viewer` writes (one folder, written atomically; it opens from disk with no
server, since every data file is a ``<script>`` the page adds on demand, never a ``fetch()``)::

    index.html                 the page: the run's manifest inline, viewer.js / viewer.css beside it
    viewer.js, viewer.css      the page's code (package data, sopcorr/viewer/static/)
    data/<cat>/images.js       the category's images (JPEG data URIs, long side ``image_size``
                               px, decoded by the project's own loader, so EXIF orientation is
                               what the pipeline saw), their sizes, split, keypoints and the
                               manifold's part labels per feature-grid cell
    data/<cat>/<method>.js     the dense correspondences of every ordered pair of the
                               category's viewer images by that method (:mod:`.encode`)

A data file assigns into one global, ``window.SOPCORR_VIEWER_DATA["<cat>/<name>"] = {...}``.

Images: up to ``max_images`` per category, the test split first, then the training split, each
in instance order (deterministic). Methods are built as the evaluation builds them
(:func:`sopcorr.matchers.methods.build_methods` with the rule's matcher settings), so the page
shows what the tables scored.
"""
from __future__ import annotations

import base64
import html
import io
import json
import logging
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import SopcorrError
from .encode import b64, encode_pairs, position_error_px

__all__ = ["ViewerSettings", "select_images", "image_record", "label_codes", "method_payload",
           "category_payloads", "write_viewer", "STATIC_FILES", "DATA_GLOBAL"]

log = logging.getLogger("sopcorr.viewer")

#: the page's code, copied beside index.html (sopcorr/viewer/static/)
STATIC_FILES = ("viewer.js", "viewer.css")
#: the global every data file assigns into
DATA_GLOBAL = "SOPCORR_VIEWER_DATA"
#: JPEG quality of the page's images
JPEG_QUALITY = 85
#: label code of a cell without a part label (invalid cell)
NO_LABEL = 255


@dataclass(frozen=True)
class ViewerSettings:
    """The viewer's own settings (config ``viewer.*``).

    max_images: images per category (None: all); image_size: long side in pixels of the page's
    images; methods: the method names (sopcorr.matchers.methods.METHODS), the first shown first.
    """

    max_images: int | None = 12
    image_size: int = 192
    methods: tuple[str, ...] = ("ours_network_geometric", "ours_geometric", "nn_raw")

    def __post_init__(self):
        if self.max_images is not None and int(self.max_images) < 2:
            raise SopcorrError(f"viewer.max_images: need at least 2 images, got {self.max_images}")
        if int(self.image_size) < 16:
            raise SopcorrError(f"viewer.image_size: need at least 16 px, got {self.image_size}")
        if not self.methods:
            raise SopcorrError("viewer.methods: name at least one method")

    @classmethod
    def from_params(cls, p: Mapping) -> "ViewerSettings":
        try:
            mx = p["max_images"]
            return cls(max_images=None if mx is None else int(mx), image_size=int(p["image_size"]),
                       methods=tuple(str(m) for m in p["methods"]))
        except KeyError as exc:
            raise SopcorrError(f"viewer settings: missing parameter {exc.args[0]!r}") from None


def select_images(instances: Sequence, max_images: int | None) -> list[int]:
    """Indices (into ``instances``) of the viewer's images: the test split first, then the
    training split, each in instance order, at most ``max_images`` (None: all)."""
    order = [i for i, inst in enumerate(instances) if inst.split == "test"] + \
            [i for i, inst in enumerate(instances) if inst.split != "test"]
    return order if max_images is None else order[: int(max_images)]


def _jpeg_data_uri(img: np.ndarray, long_side: int) -> tuple[str, int, int]:
    """(data URI, width, height) of ``img`` (h, w, 3) uint8 downscaled to ``long_side`` px
    (never up), JPEG without metadata (no EXIF orientation: the pixels as given)."""
    from PIL import Image

    h, w = img.shape[:2]
    s = min(1.0, long_side / max(h, w))
    tw, th = max(1, round(w * s)), max(1, round(h * s))
    im = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8))
    if (tw, th) != (w, h):
        im = im.resize((tw, th), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), tw, th


def image_record(frames, i: int, keypoint_names: Sequence[str], long_side: int) -> dict:
    """The page's record of instance ``i`` of a FrameSource: id, split, original size (w, h),
    the page image (data URI and its size), the object box, keypoints ((K, 3) x, y, visible as a list, null
    where unannotated; K = len(keypoint_names)), the feature grid's letterbox (size, stride)."""
    inst = frames.instances[i]
    img = frames.image(i)  # the project's loader (sopcorr.data.generic.read_image)
    h, w = img.shape[:2]
    uri, tw, th = _jpeg_data_uri(img, long_side)
    grid = frames.frame(i).grid
    if grid.letterbox.height != h or grid.letterbox.width != w:
        raise SopcorrError(f"{inst.image}: the image is {w}x{h} px but the feature store recorded "
                           f"{grid.letterbox.width}x{grid.letterbox.height} (rerun the features stage)")
    kps = []
    for name in keypoint_names:
        k = inst.keypoints.get(name)
        kps.append(None if k is None else [round(float(k[0]), 2), round(float(k[1]), 2), int(k[2])])
    return {"id": inst.id, "split": inst.split, "w": int(w), "h": int(h), "src": uri, "tw": tw, "th": th,
            "bbox": [round(float(v), 2) for v in inst.bbox], "keypoints": kps}


def label_codes(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """(n, H, W) int part labels (-1: none) -> ((n, H * W) uint8 codes, NO_LABEL where none;
    number of parts = max label + 1)."""
    labels = np.asarray(labels)
    if labels.size and labels.max() >= NO_LABEL:
        raise SopcorrError(f"part labels: {int(labels.max()) + 1} parts; the viewer draws at most {NO_LABEL}")
    codes = np.where(labels >= 0, labels, NO_LABEL).astype(np.uint8)
    return codes.reshape(labels.shape[0], -1), int(labels.max()) + 1 if labels.size else 0


def method_payload(method, indices: Sequence[int], sizes_wh: np.ndarray, progress=None) -> dict:
    """The data file of one method: the dense correspondence of every ordered pair of the
    instances ``indices`` (n of them) on the source's grid (H, W), encoded by
    :func:`sopcorr.viewer.encode.encode_pairs`. sizes_wh: (n, 2) original (w, h) per image.
    ``progress``: called once per pair."""
    n = len(indices)
    xy = score = valid = None
    interpolation = None
    for a, s in enumerate(indices):
        for b, t in enumerate(indices):
            if a == b:
                continue
            c = method.correspondence(s, t)
            if xy is None:
                h, w = c.score.shape
                xy = np.zeros((n, n - 1, h, w, 2), np.float32)
                score = np.zeros((n, n - 1, h, w), np.float32)
                valid = np.zeros((n, n - 1, h, w), bool)
                # the page holds the cells' matches only: a method that reads out points between
                # cells itself ('readout', 'adaptive': the correlation network) is shown interpolating them
                interpolation = "nearest" if c.interpolation == "nearest" else "bilinear"
            j = b - (1 if b > a else 0)
            xy[a, j], score[a, j] = c.target_xy, c.score
            valid[a, j] = np.asarray(c.valid, bool) & np.isfinite(c.score) & np.isfinite(c.target_xy).all(-1)
            if progress is not None:
                progress()
    ok = score[valid] if valid.any() else np.zeros(1, np.float32)
    lo, hi = float(ok.min()), float(ok.max())
    if hi <= lo:
        hi = lo + 1e-6
    data = encode_pairs(xy, score, valid, sizes_wh, lo, hi)
    return {"method": method.name, "interpolation": interpolation, "n": n, "grid": [int(xy.shape[2]), int(xy.shape[3])],
            "score_lo": lo, "score_hi": hi, "data": b64(data), "bytes_per_pair": int(data[0, 0].size)}


def _script(key: str, payload: dict) -> str:
    body = json.dumps(payload, separators=(",", ":"))
    return (f"(window.{DATA_GLOBAL} = window.{DATA_GLOBAL} || {{}})[{json.dumps(key)}] = {body};\n")


def category_payloads(frames, labels: np.ndarray | None, methods: Sequence, settings: ViewerSettings,
                      progress=None) -> tuple[dict, dict[str, dict]]:
    """(images payload, {method name: method payload}) of one category.

    frames: the category's FrameSource (sopcorr.matchers.base); labels: (N, H, W) part labels of
    every instance (or None); methods: built :class:`~sopcorr.matchers.methods.Method` s."""
    indices = select_images(frames.instances, settings.max_images)
    if len(indices) < 2:
        raise SopcorrError(f"{frames.category}: {len(indices)} image(s); the viewer needs at least 2")
    spec = frames.dataset.categories[frames.category]
    names = list(spec.keypoints)
    images = [image_record(frames, i, names, settings.image_size) for i in indices]
    g = frames.frame(indices[0]).grid
    payload = {"category": frames.category, "keypoint_names": names, "images": images,
               "grid": {"rows": g.shape[0], "cols": g.shape[1], "stride": g.stride, "size": g.letterbox.size},
               "labels": None, "n_parts": 0}
    if labels is not None:
        codes, n_parts = label_codes(np.asarray(labels)[indices])
        if codes.shape[1] != g.shape[0] * g.shape[1]:
            raise SopcorrError(f"{frames.category}: part labels of {codes.shape[1]} cells, feature grid "
                               f"{g.shape[0]}x{g.shape[1]} (rerun the manifold stage)")
        payload["labels"], payload["n_parts"] = b64(codes), n_parts
    sizes = np.array([[im["w"], im["h"]] for im in images], np.float64)
    out = {m.name: method_payload(m, indices, sizes, progress) for m in methods}
    return payload, out


def _static(name: str) -> str:
    return resources.files("sopcorr.viewer").joinpath("static", name).read_text(encoding="utf-8")


def render_index(manifest: dict) -> str:
    """index.html with the manifest inline (``window.SOPCORR_VIEWER``)."""
    page = _static("index.html")
    js = json.dumps(manifest, separators=(",", ":")).replace("</", "<\\/")
    title = html.escape(f"sopcorr viewer: run {manifest['run']}")
    return page.replace("/*MANIFEST*/null", js).replace("{{TITLE}}", title)


def write_viewer(out_dir: str | Path, run: str, categories: Sequence[str], inputs: Mapping,
                 settings: ViewerSettings, matchers: Mapping, devices: Mapping | None = None,
                 progress: bool = False) -> dict:
    """Write the viewer of a run to ``out_dir`` (atomically: the folder appears whole or not at
    all). Returns the manifest (also inline in index.html).

    categories: the run's categories; inputs: per category (lists in ``categories`` order)
    ``instances``, ``features``, ``labels`` and the stores the methods read (``embedding``,
    ``embedding_iter1``), and the checkpoints (one path each: ``model``, ``finetuned``, ...);
    matchers / devices: the rule's ``matchers`` / ``devices`` params
    (:meth:`sopcorr.matchers.methods.MatcherSettings.from_params`)."""
    from ..matchers.base import FrameSource, frame_sources
    from ..matchers.methods import CHECKPOINTS, MatcherSettings, build_method, method_descriptions
    from ..io import atomic_path
    from ..progress import progress as progress_bar

    cats = list(categories)

    def per_cat(key: str, k: int):
        val = inputs.get(key)
        if val is None:
            return None
        if isinstance(val, (str, Path)):
            return val
        if len(val) != len(cats):
            raise SopcorrError(f"viewer input '{key}': {len(val)} paths for {len(cats)} categories")
        return val[k]

    ms = MatcherSettings.from_params(dict(matchers), dict(devices or {}))
    checkpoints = {k: str(inputs[k]) for k in CHECKPOINTS if inputs.get(k)}
    cache: dict = {}  # matchers built once, shared by the categories
    descriptions = method_descriptions()
    manifest = {"run": run, "format": 1, "data_global": DATA_GLOBAL, "categories": [], "skipped": [],
                "matchers": json.loads(json.dumps(dict(matchers), default=str)),  # what built the methods
                "methods": [{"name": m, "description": descriptions.get(m, "")} for m in settings.methods],
                "encoding": {"levels": 255, "bytes_per_cell": 3,
                             "doc": "qx, qy: target point quantised over the image, x = q * w / 255 - 0.5; "
                                    "qs: 0 invalid, else 1..255 linear over [score_lo, score_hi]"}}
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for name in STATIC_FILES:
            (tmp / name).write_text(_static(name), encoding="utf-8")
        for k, cat in enumerate(cats):
            frames = frame_sources(per_cat("instances", k), per_cat("features", k),
                                   embedding=per_cat("embedding", k), embedding_iter1=per_cat("embedding_iter1", k),
                                   category=cat)
            lab_path = per_cat("labels", k)
            labels = FrameSource(frames["raw"].dataset, labels=lab_path, category=cat).labels if lab_path else None
            n = len(select_images(frames["raw"].instances, settings.max_images))
            if n < 2:  # nothing to match: the page leaves the category out (the run goes on)
                log.warning("viewer %s: %d image(s), nothing to match; left out of the viewer", cat, n)
                manifest["skipped"].append(cat)
                continue
            methods = [build_method(m, ms, frames, checkpoints, cache) for m in settings.methods]
            bar = progress_bar(total=len(methods) * n * (n - 1), desc=f"viewer {cat}", unit="pair", logger=log,
                               disable=not progress)
            images, per_method = category_payloads(frames["raw"], labels, methods, settings,
                                                   progress=lambda: bar.update(1))
            bar.close()
            ddir = tmp / "data" / cat
            ddir.mkdir(parents=True)
            (ddir / "images.js").write_text(_script(f"{cat}/images", images), encoding="utf-8")
            files = {}
            for m, payload in per_method.items():
                (ddir / f"{m}.js").write_text(_script(f"{cat}/{m}", payload), encoding="utf-8")
                files[m] = f"data/{cat}/{m}.js"
            errs = [position_error_px((im["w"], im["h"])) for im in images["images"]]
            manifest["categories"].append({
                "name": cat, "n_images": len(images["images"]), "images": f"data/{cat}/images.js",
                "methods": files, "has_labels": images["labels"] is not None,
                "has_keypoints": any(any(kp is not None for kp in im["keypoints"]) for im in images["images"]),
                "max_error_px": round(max(max(e) for e in errs), 3),
                "bytes": sum(p.stat().st_size for p in ddir.iterdir())})
            log.info("viewer %s: %d images, %d methods, %.1f kB", cat, len(images["images"]), len(files),
                     manifest["categories"][-1]["bytes"] / 1e3)
        (tmp / "index.html").write_text(render_index(manifest), encoding="utf-8")
    return manifest
