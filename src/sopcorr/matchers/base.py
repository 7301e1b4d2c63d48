"""What every matcher sees and returns: :class:`Frame` (one image), :class:`FrameSource` (a
category's frames by instance index, from stores given as explicit paths), the
:class:`Matcher` protocol, and the wrappers every matcher shares (the forward-backward check,
a similarity threshold).

A matcher is a class built once from a frozen params dataclass (and a model where it has one);
``correspondence(src, tgt)`` maps two Frames to a
:class:`~sopcorr.geometry.DenseCorrespondence` on the source frame's grid, and
``descriptors(frame)`` (where the method has them) gives the dense descriptor it matches,
``((H', W', D) float32, FeatureGrid)``.
"""
from __future__ import annotations

import copy
from collections import Counter, OrderedDict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError, DatasetError, SopcorrError
from ..geometry import DenseCorrespondence, FeatureGrid

__all__ = ["Frame", "FrameSource", "frame_sources", "Matcher", "ForwardBackward", "MinSimilarity",
           "forward_backward_valid", "MatcherUnavailable", "Params", "LRU", "SharedCorrespondences",
           "SharedMatcher", "share_correspondences"]


class MatcherUnavailable(SopcorrError):
    """A matcher's inputs (an embedding, labels, a checkpoint) are missing."""


class LRU(OrderedDict):
    """A small least-recently-used cache: ``get_or(key, make)``."""

    def __init__(self, size: int = 64):
        super().__init__()
        self.size = int(size)

    def get_or(self, key, make: Callable):
        if key in self:
            self.move_to_end(key)
            return self[key]
        val = make()
        self[key] = val
        if len(self) > self.size:
            self.popitem(last=False)
        return val


# ---------------------------------------------------------------------- frames
@dataclass(eq=False)
class Frame:
    """One image as a matcher sees it.

    features: (H, W, C) float32 raw backbone features (None for image-only matchers such as the
    Siamese network); valid: (H, W) bool cells on the image; grid: the FeatureGrid of the
    features (image <-> cell coordinates); embedding: optional (H, W, D) manifold embedding on
    the same grid; labels: optional (H, W) int SOP part labels on the same grid; image: uint8
    (h, w, 3), or a zero-argument callable that loads it (called once, on first access);
    id / index: the instance id and its index in the category (for messages and caches).
    """

    features: np.ndarray | None
    valid: np.ndarray | None
    grid: FeatureGrid | None
    embedding: np.ndarray | None = None
    labels: np.ndarray | None = None
    image_source: Any = field(default=None, repr=False)
    id: str = ""
    index: int = -1
    #: per-frame cache of derived arrays (matchers keep their descriptors here, keyed by their
    #: params, so a descriptor lives exactly as long as its frame)
    cache: dict = field(default_factory=dict, repr=False)

    @property
    def image(self) -> np.ndarray:
        """uint8 (h, w, 3) image (loaded lazily)."""
        if callable(self.image_source):
            self.image_source = np.asarray(self.image_source())
        if self.image_source is None:
            raise MatcherUnavailable(f"frame {self.id or self.index}: no image")
        return self.image_source

    def cached(self, key, make: Callable):
        """``self.cache[key]``, computed by ``make()`` on first use."""
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def require(self, name: str) -> np.ndarray:
        """The array field ``name`` ('features', 'embedding', 'labels'); MatcherUnavailable
        naming the frame when it is missing."""
        val = getattr(self, name)
        if val is None:
            raise MatcherUnavailable(f"frame {self.id or self.index}: no {name}")
        return val


def _read_labels(path: Path) -> np.ndarray:
    """(N, H, W) int labels of a labels.zarr (an array, or a group with array 'labels')."""
    import zarr

    try:
        z = zarr.open(str(path), mode="r")
        arr = z["labels"] if hasattr(z, "keys") and "labels" in list(z.keys()) else z
        return np.asarray(arr[:])
    except Exception as exc:  # noqa: BLE001 - any reader failure is the file's fault
        raise DatasetError(f"{path}: not a readable labels store ({type(exc).__name__}: {exc})") from None


class FrameSource:
    """The frames of one category by instance index, from stores given as explicit paths.

    instances: the prepared category (``data/<cat>/instances.json`` path, or a loaded
    :class:`~sopcorr.data.model.Dataset`); features: the raw feature store (path or an opened
    FeatureStore-like object: ``load(i)``, ``grid(i)``, ``valid``, ``ids``, ``global_desc``);
    embedding: optional embedded store of the same geometry (path or object); labels: optional
    labels.zarr path or (N, H, W) array; category: which category of the dataset (default: its
    only one). Every store's image ids must equal the category's instance ids, in order
    (DatasetError naming the file otherwise). Frames are cached (``cache_size`` of them).
    Index: ``source[i]`` or ``source.frame(i)``; ``len(source)`` instances.
    """

    def __init__(self, instances, features=None, embedding=None, labels=None,
                 category: str | None = None, cache_size: int = 128):
        from ..data.generic import load_dataset
        from ..data.model import Dataset

        if isinstance(instances, Dataset):
            ds, src = instances, "<dataset>"
        else:
            src = str(instances)
            ds = load_dataset(instances, check_images=False)
        if category is None:
            if len(ds.categories) != 1:
                raise DatasetError(f"{src}: {len(ds.categories)} categories; name the one to match")
            category = next(iter(ds.categories))
        if category not in ds.categories:
            raise DatasetError(f"{src}: no category '{category}'")
        self.category = category
        self.dataset = ds.of_category(category)
        self.ids = [inst.id for inst in self.dataset.instances]
        self.features = self._open(features, "features", src)
        self.embedding = self._open(embedding, "embedding", src)
        if self.embedding is not None and self.features is not None:
            a, b = self.features, self.embedding
            if np.asarray(a.valid).shape != np.asarray(b.valid).shape or not np.array_equal(a.valid, b.valid):
                raise DatasetError(f"{getattr(b, 'path', 'embedding')}: its grid differs from "
                                   f"{getattr(a, 'path', 'the feature store')}'s (rerun the stage that wrote it)")
        self.labels = None
        if labels is not None:
            lab = _read_labels(Path(labels)) if isinstance(labels, (str, Path)) else np.asarray(labels)
            if lab.shape[0] != len(self.ids):
                raise DatasetError(f"{labels if isinstance(labels, (str, Path)) else 'labels'}: "
                                   f"{lab.shape[0]} label maps for {len(self.ids)} instances of {src}")
            self.labels = lab
        self._frames = LRU(cache_size)

    def _open(self, store, what: str, src: str):
        if store is None:
            return None
        if isinstance(store, (str, Path)):
            from ..features.store import FeatureStore

            store = FeatureStore.open(store)
        if list(store.ids) != self.ids:
            raise DatasetError(f"{getattr(store, 'path', what)}: image ids differ from {src} "
                               f"(rerun the stage that wrote it)")
        return store

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def instances(self) -> list:
        return self.dataset.instances

    @property
    def global_desc(self) -> np.ndarray:
        """(N, D) global descriptors of the raw feature store (retrieval)."""
        if self.features is None:
            raise MatcherUnavailable(f"{self.category}: no feature store")
        return np.asarray(self.features.global_desc)

    def image(self, i: int) -> np.ndarray:
        """uint8 (h, w, 3) image of instance ``i`` (cached with its frame)."""
        return self.frame(i).image

    def _load_image(self, i: int) -> Callable[[], np.ndarray]:
        from ..data.generic import read_image

        path = self.dataset.path(self.instances[i].image)
        return lambda: read_image(path)

    def frame(self, i: int) -> Frame:
        i = int(i)
        if not 0 <= i < len(self.ids):
            raise IndexError(f"{self.category}: no instance {i} (of {len(self.ids)})")

        def make():
            f = self.features
            e = self.embedding
            return Frame(
                features=None if f is None else f.load(i),
                valid=None if f is None else np.asarray(f.valid[i], bool),
                grid=None if f is None else f.grid(i),
                embedding=None if e is None else e.load(i),
                labels=None if self.labels is None else self.labels[i],
                image_source=self._load_image(i), id=self.ids[i], index=i)

        return self._frames.get_or(i, make)

    __getitem__ = frame


def frame_sources(instances, features, embedding=None, embedding_iter1=None, labels=None,
                  category: str | None = None) -> dict[str, FrameSource]:
    """The frame sources a job's methods read, sharing one dataset and feature store:
    {'raw': features only, 'embedding': + the final embedding and the labels (when given),
    'embedding_iter1': + the iteration-1 embedding (when given)}. Arguments as
    :class:`FrameSource` (paths or opened stores)."""
    raw = FrameSource(instances, features, category=category)
    ds, feats = raw.dataset, raw.features
    out = {"raw": raw}
    if embedding is not None:
        out["embedding"] = FrameSource(ds, feats, embedding=embedding, labels=labels, category=raw.category)
    if embedding_iter1 is not None:
        out["embedding_iter1"] = FrameSource(ds, feats, embedding=embedding_iter1, category=raw.category)
    return out


# ---------------------------------------------------------------------- matchers
@runtime_checkable
class Matcher(Protocol):
    """What every matcher offers (descriptors only where the method has them)."""

    def correspondence(self, src: Frame, tgt: Frame) -> DenseCorrespondence: ...


class Params:
    """Mixin of the params dataclasses.

    ``SCHEMA`` maps a field to the config key (dotted, e.g. 'flow.geometric.strength') whose
    schema default the field's default equals (tested). :meth:`from_config` is the one
    translator from config values to params: the rules pass exactly the keys a job uses, keyed
    by the last part of the config key ('siftflow_levels') or by the field name ('levels')."""

    SCHEMA: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_config(cls, values: dict, **fixed):
        """Params from ``values`` (config key or field name -> value) and ``fixed`` (fields the
        caller sets); a key that names no field is a ConfigError."""
        names = {f.name for f in fields(cls)}
        by_key = {key.rsplit(".", 1)[-1]: name for name, key in cls.SCHEMA.items()}
        kw = {}
        for k, v in dict(values).items():
            name = by_key.get(k, k)
            if name not in names:
                raise ConfigError(f"config error: {cls.__name__}: unknown setting '{k}' "
                                  f"(allowed: {', '.join(sorted(set(by_key) | names))})")
            kw[name] = v
        kw.update(fixed)
        return cls(**kw)


def forward_backward_valid(fwd: DenseCorrespondence, bwd: DenseCorrespondence,
                           tolerance: float) -> np.ndarray:
    """(H, W) bool: source cells of ``fwd`` (source -> target) whose match, mapped back by
    ``bwd`` (target -> source, nearest cell), lands within ``tolerance`` source cells
    (Euclidean) of where it started, and is valid in ``fwd`` (cycle consistency). The one
    forward-backward check of the project."""
    hs, ws = fwd.valid.shape
    back_xy, _ = bwd.transfer(np.asarray(fwd.target_xy).reshape(-1, 2), mode="nearest")
    back_cr = fwd.grid.image_to_cell(back_xy).reshape(hs, ws, 2)
    ys, xs = np.mgrid[0:hs, 0:ws]
    err = np.hypot(back_cr[..., 0] - xs, back_cr[..., 1] - ys)
    return np.asarray(fwd.valid, bool) & (err <= tolerance)


class ForwardBackward:
    """``inner``'s correspondence, valid only where forward-backward consistent within
    ``tolerance`` source cells (:func:`forward_backward_valid`; the backward match is ``inner``
    run target -> source)."""

    def __init__(self, inner, tolerance: float):
        self.inner = inner
        self.tolerance = float(tolerance)

    def correspondence(self, src: Frame, tgt: Frame) -> DenseCorrespondence:
        fwd = self.inner.correspondence(src, tgt)
        bwd = self.inner.correspondence(tgt, src)
        fwd.valid = forward_backward_valid(fwd, bwd, self.tolerance)
        return fwd

    def descriptors(self, frame: Frame):
        return self.inner.descriptors(frame)


class MinSimilarity:
    """``inner``'s correspondence, valid only where its score is at least ``threshold``."""

    def __init__(self, inner, threshold: float):
        self.inner = inner
        self.threshold = float(threshold)

    def correspondence(self, src: Frame, tgt: Frame) -> DenseCorrespondence:
        corr = self.inner.correspondence(src, tgt)
        corr.valid = np.asarray(corr.valid, bool) & (corr.score >= self.threshold)
        return corr

    def descriptors(self, frame: Frame):
        return self.inner.descriptors(frame)


# ---------------------------------------------------------------------- shared correspondences
#: matcher classes whose correspondence is a function of their params and the two frames alone
#: (no model, no state): two instances with equal params compute the same correspondence
_PARAM_ONLY = ("GeometricMatcher", "NearestNeighbourMatcher", "SiftFlowMatcher")


def _matcher_key(matcher):
    """What identifies a matcher's computation: (class, params) for the classes of
    :data:`_PARAM_ONLY` (pure functions of their frozen params), the object itself otherwise."""
    if type(matcher).__name__ in _PARAM_ONLY:
        try:
            hash(matcher.params)
            return (type(matcher), matcher.params)
        except TypeError:  # unhashable params: by identity
            pass
    return ("object", id(matcher))


class SharedCorrespondences:
    """The correspondences one job asks for more than once, each computed once.

    A job first states what it will ask (:meth:`expect`, with a matcher tree as built by
    :func:`share_correspondences`); a correspondence expected more than once is kept after it is
    first computed and dropped at its last expected use; anything else passes through, never
    stored. Keys: (the matcher's computation, :func:`_matcher_key`; the source frame; the
    target frame), frames by identity (an entry holds its frames, so an identity is never
    reused while it is stored). Every use gets its own shallow copy whose arrays are read-only
    views of the stored ones: a consumer that rebinds a field (the forward-backward check sets
    ``valid``) changes only its copy, one that writes into an array fails loudly. Correctness
    never depends on the plan: a wrong count only costs a recomputation or a longer-kept entry.

    ``computed`` / ``served``: matcher computations run / answered from the store; ``peak``:
    the most entries held at once (each a DenseCorrespondence of the source grid: H * W * 13
    bytes plus the object)."""

    def __init__(self):
        self.remaining: Counter = Counter()
        self.store: dict = {}
        self.computed = 0
        self.served = 0
        self.peak = 0

    def expect(self, matcher, src: Frame, tgt: Frame) -> None:
        """Count one future request of ``matcher`` (a tree of :func:`share_correspondences`)
        for (src, tgt)."""
        if isinstance(matcher, SharedMatcher):
            self.remaining[(matcher.key, id(src), id(tgt))] += 1
        elif isinstance(matcher, ForwardBackward):
            self.expect(matcher.inner, src, tgt)
            self.expect(matcher.inner, tgt, src)
        elif isinstance(matcher, MinSimilarity):
            self.expect(matcher.inner, src, tgt)

    def get(self, key, src: Frame, tgt: Frame, make: Callable) -> DenseCorrespondence:
        k = (key, id(src), id(tgt))
        if k in self.store:
            val = self.store[k][0]
            self.served += 1
            self.remaining[k] -= 1
            if self.remaining[k] <= 0:
                del self.store[k]
                del self.remaining[k]
            return copy.copy(val)
        val = make()
        self.computed += 1
        left = self.remaining.pop(k, 0) - 1
        if left <= 0:
            return val
        frozen = copy.copy(val)  # read-only views: the arrays' owners (a frame's valid mask) keep theirs
        for name in ("target_xy", "score", "valid"):
            arr = getattr(frozen, name, None)
            if isinstance(arr, np.ndarray):
                view = arr.view()
                view.flags.writeable = False
                setattr(frozen, name, view)
        self.store[k] = (frozen, src, tgt)
        self.remaining[k] = left
        self.peak = max(self.peak, len(self.store))
        return copy.copy(frozen)


class SharedMatcher:
    """A matcher whose correspondences go through a :class:`SharedCorrespondences`; every other
    attribute (``descriptors``, ``image_descriptors``, ``params``, ...) is the matcher's own."""

    def __init__(self, matcher, shared: SharedCorrespondences):
        self.matcher = matcher
        self.shared = shared
        self.key = _matcher_key(matcher)

    def correspondence(self, src: Frame, tgt: Frame) -> DenseCorrespondence:
        return self.shared.get(self.key, src, tgt, lambda: self.matcher.correspondence(src, tgt))

    def __getattr__(self, name):
        if name in ("matcher", "shared", "key"):  # not yet set (copy, pickle)
            raise AttributeError(name)
        return getattr(self.matcher, name)


def share_correspondences(matcher, shared: SharedCorrespondences):
    """``matcher`` with its correspondences (and those of the matcher inside a
    :class:`ForwardBackward` / :class:`MinSimilarity`) going through ``shared``: two matchers
    that compute the same thing (e.g. the improved pseudo ground truth's geometric matcher and
    ``ours_geometric``, equal params) share one entry."""
    if isinstance(matcher, (ForwardBackward, MinSimilarity)):
        out = copy.copy(matcher)
        out.inner = share_correspondences(matcher.inner, shared)
        return out
    return SharedMatcher(matcher, shared)
