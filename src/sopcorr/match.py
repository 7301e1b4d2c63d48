"""Matching two photos outside the pipeline (``sopcorr match``): frames from images, the
matchers that need no run, a run's learned matcher, the instance boxes of a run's dataset, and
the dense correspondence as a file for scripts.

* :class:`PhotoFeatures` extracts the raw backbone features of single images exactly as the
  pipeline's feature stage does (letterbox, the backbone's default layers, per-layer and
  per-location L2, stored as float16), with the default config's backbone and normalisation
  (:class:`FeatureSettings`) at 448 px, and wraps them as
  :class:`~sopcorr.matchers.base.Frame` objects.
* :data:`NO_RUN_METHODS` are the methods that match such frames with nothing learned:
  ``geometric`` (the evaluation's ``geo_raw``: the geometric matcher on raw features, the
  default), ``nn_raw``, ``convflow``, ``siftflow``; :func:`no_run_matcher` builds one with the
  schema's default settings (the matcher objects of :mod:`sopcorr.matchers`).
* :func:`learned_matcher` is a finished run's best learned matcher, through the one entry point
  ``sopcorr.matchers.best_learned_matcher(run_dir, category) -> (matcher, description)``;
  its frames carry the images (the learned matcher computes what it needs from them).
* :func:`run_instance` finds an image among a run's prepared instances (its category and box).
* :func:`write_correspondence` / :func:`read_correspondence`: the dense correspondence of a
  pair as ``.json`` or ``.npz`` (:data:`CORRESPONDENCE_FORMAT`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import SopcorrError
from .geometry import DenseCorrespondence

__all__ = ["FeatureSettings", "PhotoFeatures", "NO_RUN_METHODS", "no_run_matcher", "learned_matcher",
           "run_instance", "RunInstance", "CORRESPONDENCE_FORMAT", "CORRESPONDENCE_SUFFIXES",
           "correspondence_record", "write_correspondence", "read_correspondence"]

#: ``sopcorr match --method`` name -> the evaluation method (:mod:`sopcorr.matchers.methods`)
#: it is; none of them needs a pipeline run
NO_RUN_METHODS: dict[str, str] = {
    "geometric": "geo_raw",
    "nn_raw": "nn_raw",
    "convflow": "convflow",
    "siftflow": "siftflow",
}

#: identifies the file layout of :func:`write_correspondence`
CORRESPONDENCE_FORMAT = "sopcorr.dense_correspondence/1"
CORRESPONDENCE_SUFFIXES = (".json", ".npz")


# ---------------------------------------------------------------------- frames from images
@dataclass(frozen=True)
class FeatureSettings:
    """The raw features of ``sopcorr match``: the default config's backbone (``backbone.name``),
    its default layers (``layers`` None), its normalisation (``relu`` as ``backbone.relu``) at
    ``input_size`` px (448: the dev split's setting, a 28 x 28 grid); ``weights`` a state-dict
    file (None: the packaged ImageNet weights); ``device`` 'auto' | 'cpu' | 'cuda'."""

    backbone: str = "efficientnet_lite0"
    layers: tuple[str, ...] | None = None
    input_size: int = 448
    relu: bool = False
    weights: str | None = None
    device: str = "auto"


class PhotoFeatures:
    """The backbone of :class:`FeatureSettings`, loaded once; :meth:`frames` turns images into
    :class:`~sopcorr.matchers.base.Frame` objects (features (H, W, C) float32 holding the
    float16 values a feature store would hold, valid (H, W), grid, the image, its name)."""

    def __init__(self, settings: FeatureSettings = FeatureSettings()):
        from .device import resolve_device
        from .features.backbones import build_backbone

        self.settings = settings
        self.device = resolve_device(settings.device)
        self.net = build_backbone(settings.backbone, int(settings.input_size),
                                  layers=list(settings.layers) if settings.layers else None,
                                  weights=settings.weights, device=self.device)

    def describe(self) -> str:
        """'efficientnet_lite0 (ImageNet), layers block10+block14, 448 px -> 28x28 grid'."""
        n = self.net
        w = "ImageNet" if self.settings.weights is None else Path(self.settings.weights).name
        return (f"{n.spec.name} ({w}), layers {'+'.join(n.layers)}, {n.input_size} px -> "
                f"{n.out_size}x{n.out_size} grid")

    def frames(self, images: Sequence[np.ndarray], names: Sequence[str] = ()) -> list:
        """One Frame per uint8 (h, w, 3) image (one batched forward pass)."""
        import torch

        from .features.extract import dense_maps, preprocess, valid_mask
        from .geometry import FeatureGrid
        from .matchers.base import Frame

        net = self.net
        names = list(names) or [f"image {k}" for k in range(len(images))]
        xs, lbs = zip(*(preprocess(img, net.input_size, net.spec.mean, net.spec.std) for img in images))
        with torch.inference_mode():
            maps = dense_maps(net, torch.stack(xs).to(self.device), relu=self.settings.relu)
            maps = maps.to(torch.float16).float().cpu().numpy()  # the feature store's precision
        return [Frame(features=np.ascontiguousarray(maps[k]), valid=valid_mask(lb, net.out_stride),
                      grid=FeatureGrid(lb, net.out_stride), image_source=images[k], id=names[k])
                for k, lb in enumerate(lbs)]


def image_frames(images: Sequence[np.ndarray], names: Sequence[str] = ()) -> list:
    """Frames carrying only their images (for matchers that compute their own descriptors)."""
    from .matchers.base import Frame

    names = list(names) or [f"image {k}" for k in range(len(images))]
    return [Frame(None, None, None, image_source=img, id=n) for img, n in zip(images, names)]


# ---------------------------------------------------------------------- matchers
def no_run_matcher(method: str, device: str = "auto", seed: int = 0):
    """(matcher, description) of a :data:`NO_RUN_METHODS` method with the schema's default
    settings (``seed``: the geometric matcher's RANSAC); SopcorrError naming the valid
    methods otherwise."""
    from .matchers.geometric import GeometricParams
    from .matchers.methods import MatcherSettings, build_matcher, method_descriptions
    from .matchers.nn import NNParams
    from .matchers.siftflow import SiftFlowParams

    if method not in NO_RUN_METHODS:
        raise SopcorrError(f"--method: unknown method '{method}' (valid: {', '.join(NO_RUN_METHODS)}, "
                           "or learned with --run / --checkpoint)")
    name = NO_RUN_METHODS[method]
    settings = MatcherSettings(nn=NNParams(device=device), siftflow=SiftFlowParams(),
                               geometric=GeometricParams(seed=int(seed)))
    return build_matcher(name, settings), method_descriptions().get(name, name)


def learned_matcher(run_dir: str | Path, category: str | None = None):
    """(matcher, description) of a finished run's best learned matcher, from
    ``sopcorr.matchers.best_learned_matcher(run_dir, category)`` (the learned network's one
    entry point; it reads the category's manifold embedding from the run where the method
    needs it). SopcorrError when the run folder is missing or this version has no such entry
    point."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SopcorrError(f"--run {run_dir}: no such run folder (a finished run's results/<run>)")
    entry = learned_entry_point()
    return entry(run_dir, category)


def learned_entry_point():
    """``sopcorr.matchers.best_learned_matcher``; SopcorrError (one line) when it is missing."""
    try:
        from .matchers import best_learned_matcher
    except ImportError:
        raise SopcorrError("--run: this version of sopcorr has no learned matcher entry point "
                           "(sopcorr.matchers.best_learned_matcher); match without --run (the "
                           "geometric matcher needs no run)") from None
    return best_learned_matcher


# ---------------------------------------------------------------------- a run's instances
@dataclass(frozen=True)
class RunInstance:
    """An image found among a run's prepared instances: its category, instance id and box
    (x0, y0, x1, y1) or None."""

    category: str
    id: str
    bbox: tuple[float, float, float, float] | None


def run_instance(run_dir: str | Path, image: str | Path) -> RunInstance | None:
    """The instance of ``results/<run>/data/<cat>/instances.json`` whose image file is
    ``image`` (the same file, however the path is written), or None."""
    from .data.generic import load_dataset
    from .errors import DatasetError

    target = Path(image).resolve()
    for inst_json in sorted(Path(run_dir).glob("data/*/instances.json")):
        try:
            ds = load_dataset(inst_json, check_images=False)
        except DatasetError:
            continue
        for inst in ds.instances:
            try:
                same = Path(ds.path(inst.image)).resolve() == target
            except OSError:
                continue
            if same:
                box = tuple(float(v) for v in inst.bbox) if inst.bbox is not None else None
                return RunInstance(inst.category, inst.id, box)
    return None


# ---------------------------------------------------------------------- the correspondence file
def correspondence_record(corr: DenseCorrespondence, source: dict, target: dict, **meta) -> dict:
    """The dense correspondence of a pair as plain arrays and metadata.

    source / target: {'image': name, 'size': (h, w)}; ``meta``: e.g. method=, model=. Arrays
    on the source's feature grid (H, W): 'source_xy' (H, W, 2) the cells' centres in source
    image pixels (x, y), 'target_xy' (H, W, 2) their matches in target image pixels, 'score'
    (H, W) the matcher's confidence, 'valid' (H, W) bool (cells on the image whose match is
    defined); 'grid': {'shape', 'stride', 'input_size'} of the source grid."""
    g = corr.grid
    return {
        "format": CORRESPONDENCE_FORMAT,
        "source": {"image": str(source["image"]), "size": [int(v) for v in source["size"]]},
        "target": {"image": str(target["image"]), "size": [int(v) for v in target["size"]]},
        **{k: str(v) for k, v in meta.items()},
        "grid": {"shape": [int(v) for v in corr.valid.shape], "stride": int(g.stride),
                 "input_size": int(g.letterbox.size)},
        "source_xy": g.cell_centers_image().astype(np.float32),
        "target_xy": np.asarray(corr.target_xy, np.float32),
        "score": np.asarray(corr.score, np.float32),
        "valid": np.asarray(corr.valid, bool),
    }


_ARRAYS = ("source_xy", "target_xy", "score", "valid")


def _nan_to_none(a: np.ndarray):
    if a.dtype == bool:
        return a.tolist()
    return [_nan_to_none(x) for x in a] if a.ndim > 1 else \
        [None if not math.isfinite(v) else round(float(v), 4) for v in a.tolist()]


def write_correspondence(path: str | Path, record: dict) -> None:
    """Write :func:`correspondence_record` atomically: ``.json`` (arrays as nested lists, NaN as
    null, coordinates rounded to 1e-4 px) or ``.npz`` (the arrays, plus 'meta': the rest as
    JSON text)."""
    from .io import atomic_path

    path = Path(path)
    meta = {k: v for k, v in record.items() if k not in _ARRAYS}
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".npz":
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, meta=np.array(json.dumps(meta)),
                                    **{k: record[k] for k in _ARRAYS})
        elif path.suffix.lower() == ".json":
            out = {**meta, **{k: _nan_to_none(np.asarray(record[k])) for k in _ARRAYS}}
            tmp.write_text(json.dumps(out, separators=(",", ":")) + "\n")
        else:
            raise SopcorrError(f"{path}: a correspondence file ends in .json or .npz")


def read_correspondence(path: str | Path) -> dict:
    """The record :func:`write_correspondence` wrote (arrays as numpy: float32 with NaN for
    null, 'valid' bool)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path) as z:
                rec = json.loads(str(z["meta"]))
                rec.update({k: z[k] for k in _ARRAYS})
        else:
            rec = json.loads(path.read_text())
            for k in _ARRAYS:  # null -> NaN
                rec[k] = np.array(rec[k], dtype=bool if k == "valid" else np.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise SopcorrError(f"{path}: not a dense correspondence file ({exc})") from None
    if rec.get("format") != CORRESPONDENCE_FORMAT:
        raise SopcorrError(f"{path}: not a {CORRESPONDENCE_FORMAT} file")
    return rec

