"""Per-category feature stores (zarr v3 groups), the contract of docs/ARCHITECTURE.md.

Layout of ``<category>.zarr``::

    features  (N, H, W, C) float16 (selectable), chunk (1, H, W, C), dims (image, row, col, channel)
    valid     (N, H, W) bool, dims (image, row, col): cell centre inside the letterboxed image
    global    (N, D) float32, dims (image, channel): L2-normalised global descriptor per image
    attrs     backbone, layers, input_size, stride, image_ids, image_hw (N x [h, w]),
              normalisation, relu (+ anything the writer adds, e.g. channels, complete=True)

Stores are written to a temporary sibling and renamed into place (:func:`sopcorr.io.atomic_path`),
so a killed job leaves no store that looks complete; readers also check ``attrs['complete']``.
The manifold stage reuses :func:`write_feature_store` for its embedded features.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import zarr

from ..errors import DatasetError
from ..geometry import FeatureGrid, Letterbox
from ..io import atomic_path

#: attrs every feature store carries
REQUIRED_ATTRS = ("backbone", "layers", "input_size", "stride", "image_ids", "image_hw",
                  "normalisation", "relu")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


class FeatureStoreWriter:
    """Incremental writer of one store at ``path`` (a zarr v3 group directory).

    Use as a context manager: the store is built in a temporary directory and renamed to
    ``path`` only when the block exits without an exception and every image was written.

    ``n``: number of images; ``grid_hw``: (H, W); ``channels``: C; ``global_dim``: D (None:
    the global descriptor is computed as the L2-normalised mean of each image's features over
    its valid cells, so D = C); ``dtype`` of ``features`` (float16 by default).
    """

    def __init__(self, path: str | Path, n: int, grid_hw: tuple[int, int], channels: int,
                 attrs: dict, global_dim: int | None = None, dtype=np.float16):
        missing = [k for k in REQUIRED_ATTRS if k not in attrs]
        if missing:
            raise ValueError(f"feature store attrs lack {missing}")
        if len(attrs["image_ids"]) != n or len(attrs["image_hw"]) != n:
            raise ValueError(f"attrs image_ids/image_hw must have {n} entries")
        self.path = Path(path)
        self.n, (self.h, self.w), self.c = int(n), (int(grid_hw[0]), int(grid_hw[1])), int(channels)
        self.attrs = _jsonable(attrs)
        self.global_dim = global_dim
        self.dtype = np.dtype(dtype)
        self._written = np.zeros(self.n, bool)
        self._ctx = None

    def __enter__(self) -> "FeatureStoreWriter":
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        g = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        n, h, w, c = self.n, self.h, self.w, self.c
        self._features = g.create_array(
            "features", shape=(n, h, w, c), chunks=(1, h, w, c), dtype=self.dtype,
            dimension_names=["image", "row", "col", "channel"], fill_value=0)
        self._valid = g.create_array(
            "valid", shape=(n, h, w), chunks=(max(1, n), h, w), dtype=bool,
            dimension_names=["image", "row", "col"], fill_value=False)
        d = self.global_dim or c
        self._global = g.create_array(
            "global", shape=(n, d), chunks=(max(1, n), d), dtype=np.float32,
            dimension_names=["image", "channel"], fill_value=0)
        self._group = g
        self._valid_buf = np.zeros((n, h, w), bool)
        self._global_buf = np.zeros((n, d), np.float32)
        return self

    def write(self, i: int, features: np.ndarray, valid: np.ndarray,
              global_desc: np.ndarray | None = None) -> None:
        """Write image ``i``: features (H, W, C), valid (H, W) bool, global_desc (D,) or None."""
        features = np.asarray(features)
        valid = np.asarray(valid, dtype=bool)
        if features.shape != (self.h, self.w, self.c) or valid.shape != (self.h, self.w):
            raise ValueError(f"image {i}: features {features.shape} / valid {valid.shape} do not "
                             f"match the store's ({self.h}, {self.w}, {self.c})")
        self._features[i] = features.astype(self.dtype, copy=False)
        self._valid_buf[i] = valid
        if global_desc is None:
            if self.global_dim not in (None, self.c):
                raise ValueError(f"image {i}: a global descriptor of dim {self.global_dim} is required")
            global_desc = masked_mean_descriptor(features[None].astype(np.float32), valid[None])[0]
        self._global_buf[i] = np.asarray(global_desc, np.float32).reshape(-1)
        self._written[i] = True

    def _finalise(self) -> None:
        if not self._written.all():
            raise RuntimeError(f"{self.path}: images {np.flatnonzero(~self._written)[:5].tolist()} "
                               f"were never written")
        self._valid[:] = self._valid_buf
        self._global[:] = self._global_buf
        self._group.attrs.update({**self.attrs, "complete": True})

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self._finalise()
            except BaseException as err:
                self._ctx.__exit__(type(err), err, err.__traceback__)
                raise
        return self._ctx.__exit__(exc_type, exc, tb)


def masked_mean_descriptor(features: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(N, H, W, C) features, (N, H, W) valid -> (N, C) float32 L2-normalised mean over valid
    cells (all cells when an image has none)."""
    f = np.asarray(features, np.float32)
    v = np.asarray(valid, bool)
    v = np.where(v.reshape(len(v), -1).any(1)[:, None, None], v, True)
    s = (f * v[..., None]).sum((1, 2))
    s /= np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)
    return s.astype(np.float32)


def write_feature_store(path: str | Path, features, valid: np.ndarray,
                        global_desc: np.ndarray | None, attrs: dict, dtype=np.float16) -> None:
    """Write a complete store atomically.

    features:    (N, H, W, C) array, or an iterable of N per-image (H, W, C) arrays (streamed)
    valid:       (N, H, W) bool
    global_desc: (N, D) float, or None (masked mean of the features, L2-normalised)
    attrs:       at least :data:`REQUIRED_ATTRS`
    dtype:       dtype of the ``features`` array (float16 default; float32 allowed)
    """
    valid = np.asarray(valid, bool)
    n, h, w = valid.shape
    it: Iterable
    if isinstance(features, np.ndarray):
        if features.shape[:3] != (n, h, w):
            raise ValueError(f"features {features.shape} do not match valid {valid.shape}")
        c = features.shape[3]
        it = iter(features)
        first = None
    else:
        it = iter(features)
        first = next(it)
        c = np.asarray(first).shape[-1]
    gd = None if global_desc is None else np.asarray(global_desc, np.float32)
    with FeatureStoreWriter(path, n, (h, w), c, attrs,
                            global_dim=None if gd is None else gd.shape[1], dtype=dtype) as wr:
        i = 0
        for f in ([first] if first is not None else []):
            wr.write(i, f, valid[i], None if gd is None else gd[i])
            i += 1
        for f in it:
            if i >= n:
                raise ValueError(f"more than {n} feature maps for {n} valid masks")
            wr.write(i, f, valid[i], None if gd is None else gd[i])
            i += 1
        if i != n:
            raise ValueError(f"{i} feature maps for {n} valid masks")


class FeatureStore:
    """Read access to a feature store; open with :meth:`FeatureStore.open`.

    ``features`` (zarr array (N, H, W, C)), ``valid`` ((N, H, W) bool numpy), ``global_desc``
    ((N, D) float32 numpy), ``ids`` (list of N image ids), ``image_hw`` ((N, 2) int),
    ``stride``, ``input_size``, ``attrs`` (dict).
    """

    def __init__(self, path: Path, group):
        self.path = path
        self.group = group
        self.attrs = dict(group.attrs)
        self.features = group["features"]
        self.valid = np.asarray(group["valid"][:], bool)
        self.global_desc = np.asarray(group["global"][:], np.float32)
        self.ids = list(self.attrs["image_ids"])
        self.image_hw = np.asarray(self.attrs["image_hw"], int).reshape(-1, 2)
        self.stride = int(self.attrs["stride"])
        self.input_size = int(self.attrs["input_size"])

    @classmethod
    def open(cls, path: str | Path) -> "FeatureStore":
        path = Path(path)
        if not path.is_dir():
            raise DatasetError(f"{path}: feature store not found")
        try:
            group = zarr.open_group(str(path), mode="r")
            attrs = dict(group.attrs)
            for name in ("features", "valid", "global"):
                group[name]
        except Exception as exc:
            raise DatasetError(f"{path}: not a readable feature store ({type(exc).__name__}: {exc})") from None
        missing = [k for k in REQUIRED_ATTRS if k not in attrs]
        if missing or not attrs.get("complete", False):
            raise DatasetError(f"{path}: incomplete feature store (missing attrs: {missing or ['complete']})")
        return cls(path, group)

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(int(s) for s in self.features.shape)

    def index(self, image_id: str) -> int:
        try:
            return self.ids.index(image_id)
        except ValueError:
            raise DatasetError(f"{self.path}: no image '{image_id}' in the feature store") from None

    def load(self, i: int) -> np.ndarray:
        """(H, W, C) float32 features of image ``i``."""
        return np.asarray(self.features[int(i)], dtype=np.float32)

    def load_all(self) -> np.ndarray:
        """(N, H, W, C) float32 features of every image."""
        return np.asarray(self.features[:], dtype=np.float32)

    def letterbox(self, i: int) -> Letterbox:
        h, w = self.image_hw[int(i)]
        return Letterbox(int(h), int(w), self.input_size)

    def grid(self, i: int) -> FeatureGrid:
        """The :class:`FeatureGrid` of image ``i`` (its letterbox and the store's stride)."""
        return FeatureGrid(self.letterbox(i), self.stride)
