"""Correspondence methods under evaluation, built by name over one category's instances.

``build_method(name, ctx)`` returns a :class:`Method` whose ``correspondence(src, tgt)`` gives the
:class:`~sopcorr.geometry.DenseCorrespondence` from instance ``src`` to instance ``tgt`` (indices
into ``ctx.instances``, the prepared category's order). Every evaluation treats all methods
alike through ``DenseCorrespondence.transfer``.

Registered names:

=================== =========================================================================
``nn_raw``           nearest neighbour (cosine) on the raw backbone features (features/<cat>.zarr)
``nn_embed_iter0``   nearest neighbour on the iteration-0 manifold embedding (ablation)
``nn_embed``         nearest neighbour on the final manifold embedding (manifold/<cat>/embedded.zarr)
``nn_embed_labels``  as nn_embed, a cell matching only cells of its own SOP label (labels.zarr)
``pseudo_gt``        mutual nearest neighbours on the embedding: the pseudo ground truth (cells
                     without a mutual match are undefined and count as misses)
``siftflow``         the SIFT-flow optimiser on dense SIFT (radius ``evaluate.siftflow_radius``
                     px, sampled at the raw feature grid's cell centres)
``siftflow_prior``   siftflow with the location prior (keypoint localisation only)
``convflow``         the SIFT-flow optimiser on the raw backbone features
``convflow_prior``   convflow with the location prior (keypoint localisation only)
``ours_siamese``     the Siamese flow network (siamese/model.pt)
``ours_finetuned``   the Siamese network fine-tuned on the keypoint train split (siamese/finetuned.pt)
``ours_geometric``   the improved variant's matcher: raw features + embedding, edge-aware
                     consensus, piecewise RANSAC affine location prior (sopcorr.flow.geometric)
``ours_geometric_prior``  ours_geometric with the keypoint location prior (localisation only)
=================== =========================================================================

A method whose inputs are missing raises :class:`MethodUnavailable`; :func:`available_methods`
skips it with a logged note.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import SopcorrError
from ..geometry import DenseCorrespondence

log = logging.getLogger(__name__)


class MethodUnavailable(SopcorrError):
    """A method's inputs (a store, a checkpoint) are missing."""


class _LRU(OrderedDict):
    def __init__(self, size: int = 64):
        super().__init__()
        self.size = size

    def get_or(self, key, make: Callable):
        if key in self:
            self.move_to_end(key)
            return self[key]
        val = make()
        self[key] = val
        if len(self) > self.size:
            self.popitem(last=False)
        return val


@dataclass
class CategoryContext:
    """Everything one category's evaluation reads, loaded lazily.

    category: the category; run_dir: results/<run> (paths below are relative to it; manifold and
    Siamese outputs are read from manifold/<variant>/<category>/ and siamese/<variant>/, variant =
    config manifold.variant, falling back to the variant-free layout);
    config: the validated configuration; dataset: the prepared category (default: loaded from
    data/<cat>/instances.json); stores: {'raw' | 'embed' | 'embed_iter0': FeatureStore-like}
    overrides; labels: (N, H, W) SOP labels override; matchers: {'siamese' | 'finetuned':
    SiameseMatcher-like} overrides; images: optional {index: uint8 (H, W, 3)} override.
    Stand-ins for tests need only the attributes used: stores ``load(i)``, ``grid(i)``, ``valid``,
    ``global_desc``, ``ids``; matchers ``correspondence(img_a, img_b)`` and ``features(img)``.
    """

    category: str
    run_dir: Path | None = None
    config: dict = field(default_factory=dict)
    dataset: Any = None
    stores: dict = field(default_factory=dict)
    labels: Any = None
    matchers: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ paths and data
    def path(self, *parts: str) -> Path:
        if self.run_dir is None:
            raise MethodUnavailable(f"no run directory for {'/'.join(parts)}")
        return Path(self.run_dir).joinpath(*parts)

    def get_dataset(self):
        if self.dataset is None:
            from ..data.generic import load_dataset

            ds = load_dataset(self.path("data", self.category, "instances.json"), check_images=False)
            self.dataset = ds.of_category(self.category) if self.category in ds.categories else ds
        return self.dataset

    @property
    def instances(self) -> list:
        return self.get_dataset().instances

    @property
    def names(self) -> list[str]:
        return list(self.get_dataset().categories[self.category].keypoints)

    def split_indices(self, split: str) -> np.ndarray:
        return np.array([i for i, inst in enumerate(self.instances) if inst.split == split], dtype=int)

    def keypoints(self, i: int) -> np.ndarray:
        """(P, 3) x, y, visible of instance ``i`` over the category's names."""
        return self.instances[i].keypoint_array(self.names)

    def bbox(self, i: int) -> tuple:
        inst = self.instances[i]
        if inst.bbox is None:
            from ..data.generic import image_size

            h, w = image_size(self.get_dataset().path(inst.image))
            return (0.0, 0.0, float(w - 1), float(h - 1))
        return tuple(float(v) for v in inst.bbox)

    def image(self, i: int) -> np.ndarray:
        if i in self.images:
            return self.images[i]
        cache = self._cache.setdefault("images", _LRU(64))

        def load():
            from ..data.generic import read_image

            return read_image(self.get_dataset().path(self.instances[i].image))

        return cache.get_or(i, load)

    # ------------------------------------------------------------------ stores and models
    #: candidate locations (variant-aware layout first: manifold/<variant>/<category>/)
    _STORE_PATHS = {
        "raw": [("features", "{cat}.zarr")],
        "embed": [("manifold", "{var}", "{cat}", "embedded.zarr"), ("manifold", "{cat}", "embedded.zarr")],
        "embed_iter0": [("manifold", "{var}", "{cat}", "embedded_iter0.zarr"),
                        ("manifold", "{cat}", "embedded_iter0.zarr")],
    }

    @property
    def variant(self) -> str:
        """The manifold variant whose outputs are read (config manifold.variant; default paper)."""
        return self._cache.get("variant") or self.config.get("manifold", {}).get("variant", "paper")

    def _first_existing(self, candidates, is_dir: bool) -> Path | None:
        for parts in candidates:
            p = self.path(*[s.format(cat=self.category, var=self.variant) for s in parts])
            if (p.is_dir() if is_dir else p.is_file()):
                return p
        return None

    def store(self, kind: str):
        if kind in self.stores:
            return self.stores[kind]
        for parts in self._STORE_PATHS[kind]:
            p = self.path(*[s.format(cat=self.category, var=self.variant) for s in parts])
            if p.is_dir():
                from ..features.store import FeatureStore

                st = FeatureStore.open(p)
                ids = [inst.id for inst in self.instances]
                if list(st.ids) != ids:
                    raise SopcorrError(f"{p}: image ids differ from data/{self.category}/instances.json "
                                       f"(rerun the stage that wrote it)")
                self.stores[kind] = st
                return st
        raise MethodUnavailable(f"no {kind} feature store for '{self.category}' under {self.run_dir}")

    def get_labels(self) -> np.ndarray:
        if self.labels is None:
            p = self._first_existing([("manifold", "{var}", "{cat}", "labels.zarr"),
                                      ("manifold", "{cat}", "labels.zarr")], is_dir=True)
            if p is None:
                raise MethodUnavailable(f"no SOP labels (manifold/{self.variant}/{self.category}/labels.zarr)")
            import zarr

            z = zarr.open(str(p), mode="r")
            arr = z["labels"] if hasattr(z, "keys") and "labels" in list(z.keys()) else z
            self.labels = np.asarray(arr[:])
        return self.labels

    def matcher(self, kind: str):
        if kind in self.matchers:
            return self.matchers[kind]
        fname = {"siamese": "model.pt", "finetuned": "finetuned.pt"}[kind]
        p = self._first_existing([("siamese", "{var}", fname), ("siamese", fname)], is_dir=False)
        if p is None:
            raise MethodUnavailable(f"checkpoint siamese/{self.variant}/{fname} not found")
        from ..siamese.predict import SiameseMatcher

        dev = self.config.get("siamese", {}).get("device", "auto")
        self.matchers[kind] = SiameseMatcher(p, device=dev)
        return self.matchers[kind]

    @property
    def eval_config(self) -> dict:
        return self.config.get("evaluate", {})

    @property
    def device(self) -> str:
        return self.config.get("backbone", {}).get("device", "cpu")


# ---------------------------------------------------------------------- methods
@dataclass
class Method:
    """A named correspondence method. ``base``: the name of the underlying correspondence
    (prior variants share their base's correspondences); ``prior``: apply the location prior
    in keypoint localisation; ``needs_retrieval``: only meaningful with retrieved neighbours."""

    name: str
    base: str
    fn: Callable[[int, int], DenseCorrespondence]
    prior: bool = False

    def correspondence(self, src: int, tgt: int) -> DenseCorrespondence:
        return self.fn(int(src), int(tgt))


def _nn_fn(ctx: CategoryContext, kind: str, mutual: bool, labels: bool):
    st = ctx.store(kind)
    lab = ctx.get_labels() if labels else None
    cache = _LRU(128)
    from ..flow.nn import nearest_neighbour

    def fn(s, t):
        fs = cache.get_or(s, lambda: st.load(s))
        ft = cache.get_or(t, lambda: st.load(t))
        kw = {}
        if lab is not None:
            kw = dict(labels_src=lab[s], labels_tgt=lab[t])
        return nearest_neighbour(fs, ft, st.grid(s), st.grid(t), np.asarray(st.valid[s], bool),
                                 np.asarray(st.valid[t], bool), mutual=mutual, device=ctx.device, **kw)

    return fn


def dense_sift_on_grid(image: np.ndarray, grid, radius: float) -> np.ndarray:
    """(H, W, 128) L2-normalised OpenCV SIFT descriptors at the cell centres of ``grid``
    (image coordinates) with support radius ``radius`` px."""
    from .classify import sift_descriptors

    centres = grid.cell_centers_image().reshape(-1, 2)
    d = sift_descriptors(image, centres, radius).astype(np.float32)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    h, w = grid.shape
    return d.reshape(h, w, -1)


def siftflow_params(config: dict) -> dict:
    """SIFT-flow parameters from the ``flow`` section (keys ``siftflow_<param>``)."""
    from ..flow.siftflow import DEFAULTS

    out = {}
    for k, v in config.get("flow", {}).items():
        if k.startswith("siftflow_") and k[len("siftflow_"):] in DEFAULTS:
            out[k[len("siftflow_"):]] = v
    return out


def _flow_fn(ctx: CategoryContext, descriptor: str):
    st = ctx.store("raw")
    from ..flow.siftflow import siftflow_correspondence

    params = siftflow_params(ctx.config)
    radius = float(ctx.eval_config.get("siftflow_radius", 20))
    cache = _LRU(128)

    def desc(i):
        if descriptor == "conv":
            return st.load(i)
        return dense_sift_on_grid(ctx.image(i), st.grid(i), radius)

    def fn(s, t):
        ds = cache.get_or(s, lambda: desc(s))
        dt = cache.get_or(t, lambda: desc(t))
        return siftflow_correspondence(ds, dt, st.grid(s), st.grid(t), np.asarray(st.valid[s], bool),
                                       np.asarray(st.valid[t], bool), **params)

    return fn


def _siamese_fn(ctx: CategoryContext, kind: str):
    m = ctx.matcher(kind)

    def fn(s, t):
        return m.correspondence(ctx.image(s), ctx.image(t))

    return fn


def _geometric_fn(ctx: CategoryContext):
    """The improved variant's matcher (sopcorr.flow.geometric): raw features concatenated with
    the manifold embedding (config flow.geometric), edge-aware consensus, piecewise RANSAC affine
    location prior."""
    from ..flow.geometric import concat_descriptors, geometric_correspondence, geometric_params

    gcfg = ctx.config["flow"]["geometric"]
    kw = geometric_params(gcfg)
    weight = float(gcfg["embedding_weight"])
    raw = ctx.store("raw")
    emb = ctx.store("embed") if weight > 0 else None
    seed = int(ctx.config.get("seed", 0))
    cache = _LRU(128)

    def desc(i):
        return cache.get_or(i, lambda: concat_descriptors(raw.load(i), emb.load(i) if emb is not None else None, weight))

    def fn(s, t):
        return geometric_correspondence(desc(s), desc(t), raw.grid(s), raw.grid(t), np.asarray(raw.valid[s], bool),
                                        np.asarray(raw.valid[t], bool), seed=seed, **kw)

    return fn


#: name -> (base name, prior, builder of the correspondence function)
_REGISTRY: dict[str, tuple[str, bool, Callable[[CategoryContext], Callable]]] = {
    "nn_raw": ("nn_raw", False, lambda c: _nn_fn(c, "raw", False, False)),
    "nn_embed_iter0": ("nn_embed_iter0", False, lambda c: _nn_fn(c, "embed_iter0", False, False)),
    "nn_embed": ("nn_embed", False, lambda c: _nn_fn(c, "embed", False, False)),
    "nn_embed_labels": ("nn_embed_labels", False, lambda c: _nn_fn(c, "embed", False, True)),
    "pseudo_gt": ("pseudo_gt", False, lambda c: _nn_fn(c, "embed", True, False)),
    "siftflow": ("siftflow", False, lambda c: _flow_fn(c, "sift")),
    "siftflow_prior": ("siftflow", True, lambda c: _flow_fn(c, "sift")),
    "convflow": ("convflow", False, lambda c: _flow_fn(c, "conv")),
    "convflow_prior": ("convflow", True, lambda c: _flow_fn(c, "conv")),
    "ours_siamese": ("ours_siamese", False, lambda c: _siamese_fn(c, "siamese")),
    "ours_finetuned": ("ours_finetuned", False, lambda c: _siamese_fn(c, "finetuned")),
    "ours_geometric": ("ours_geometric", False, lambda c: _geometric_fn(c)),
    "ours_geometric_prior": ("ours_geometric", True, lambda c: _geometric_fn(c)),
}

METHOD_NAMES = list(_REGISTRY)


def build_method(name: str, ctx: CategoryContext) -> Method:
    """The method ``name`` over ``ctx``'s category; MethodUnavailable when its inputs are
    missing, SopcorrError for an unknown name. Correspondence functions are shared between a
    method and its prior variant (one per base per context)."""
    if name not in _REGISTRY:
        raise SopcorrError(f"unknown evaluation method '{name}' (valid: {', '.join(METHOD_NAMES)})")
    base, prior, builder = _REGISTRY[name]
    fns = ctx._cache.setdefault("method_fns", {})
    if base not in fns:
        try:
            fns[base] = builder(ctx)
        except MethodUnavailable:
            raise
        except (ImportError, ModuleNotFoundError) as exc:
            raise MethodUnavailable(f"{name}: module not available ({exc})") from None
    return Method(name, base, fns[base], prior)


def available_methods(names, ctx: CategoryContext) -> list[Method]:
    """Build every method of ``names`` that can run; log a note for each one skipped."""
    out = []
    for n in names:
        try:
            out.append(build_method(n, ctx))
        except MethodUnavailable as exc:
            log.warning("skipping method %s for %s: %s", n, ctx.category, exc)
    return out
