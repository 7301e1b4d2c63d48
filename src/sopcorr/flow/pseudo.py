"""Pseudo-ground-truth dense flows of sampled same-category image pairs, computed by the
pseudo-ground-truth matcher (:mod:`sopcorr.matchers.pseudo`: nearest neighbours on the
manifold embedding in the paper's variant, the geometric matcher in the improved one) and
stored per category (``results/<run>/flow/<variant>/<cat>.zarr``).

Store layout (zarr v3 group)::

    pairs      (P, 2) int32   (source, target) image indices into the category's image order
    target_xy  (P, H, W, 2) float32  target *image* coordinates (x, y) matched to each source
               cell of the source's feature grid; chunk (<=16, H, W, 2)
    valid      (P, H, W) bool  trusted cells (the matcher's validity: mutual / forward-backward
               consistent, score >= min_similarity, as its settings say)
    score      (P, H, W) float32  cosine similarity of the match
    confirmations (P, H, W) uint8  optional (``flow.cycle_images`` > 0): cycle confirmation
               counts (:mod:`sopcorr.flow.cycle`): how many hub images confirm each cell's match
               (at every cell; combine with ``valid``); attrs cycle_hubs (hub image ids),
               cycle_hub_indices, cycle_images (K), cycle_tolerance (target cells)
    attrs      image_ids, image_hw (N x [h, w]), input_size, stride (the embedded store's
               feature geometry: each pair's source FeatureGrid is FeatureGrid(Letterbox(h, w,
               input_size), stride)), grid_shape [H, W], pair_ids (P x [src_id, tgt_id]),
               mutual, min_similarity, refine, source, complete=True

Use :meth:`FlowStore.correspondence` to rebuild a pair's DenseCorrespondence and
:func:`upsample_to_input` (or :meth:`FlowStore.upsampled`) to get a flow at the Siamese input
resolution.
"""
from __future__ import annotations

import logging
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import zarr

from ..errors import DatasetError, SopcorrError
from ..geometry import DenseCorrespondence, FeatureGrid, Letterbox, bilinear_sample
from ..io import atomic_path

__all__ = ["sample_pairs", "category_seed", "pseudo_flows", "share_planned", "write_flow_store", "FlowStore",
           "upsample_to_input"]

log = logging.getLogger(__name__)

CONVENTION = ("target_xy[p, r, c] = target image coords (x, y) matched to source cell (r, c); "
              "upsampled flow[y, x] = (dx, dy): source input pixel (x, y) -> target input pixel "
              "(x + dx, y + dy), both letterboxed at the same size")


def category_seed(seed: int, category: str) -> list[int]:
    """Seed sequence of one category: [seed, crc32(category)] (categories stay independent)."""
    return [int(seed), zlib.crc32(category.encode("utf-8"))]


def sample_pairs(n_images: int, n_pairs: int, seed, ids: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """Deterministic ordered pairs (i, j), i != j, drawn without replacement.

    n_images: images are 0 .. n_images - 1; n_pairs: how many pairs (all ordered pairs when
    there are fewer); seed: anything ``numpy.random.default_rng`` accepts (e.g.
    :func:`category_seed`); ids: optional subset of image indices to draw from (e.g. the train
    split). Returns pairs sorted by (i, j)."""
    pool = np.arange(n_images) if ids is None else np.unique(np.asarray(list(ids), dtype=np.int64))
    if pool.size and (pool.min() < 0 or pool.max() >= n_images):
        raise SopcorrError(f"sample_pairs: image indices must lie in [0, {n_images}), got {pool.min()}..{pool.max()}")
    m = int(pool.size)
    total = m * (m - 1)
    if total == 0 or n_pairs <= 0:
        return []
    rng = np.random.default_rng(seed)
    n = min(int(n_pairs), total)
    ks = np.sort(rng.choice(total, size=n, replace=False))
    a = ks // (m - 1)
    b = ks % (m - 1)
    b = b + (b >= a)
    return [(int(pool[i]), int(pool[j])) for i, j in zip(a, b)]


def pseudo_flows(matcher, frames, pairs: Sequence[tuple[int, int]], progress: bool = False,
                 hubs: Sequence[int] | None = None, cycle_tolerance: float = 1.5,
                 stats: dict | None = None) -> dict[str, np.ndarray]:
    """The pseudo-ground-truth correspondences of ``pairs`` by ``matcher``.

    matcher: the pseudo-ground-truth matcher (:func:`sopcorr.matchers.pseudo.build_pseudo_gt`;
    any object with ``correspondence(src_frame, tgt_frame)``); frames: the category's frames
    (:class:`sopcorr.matchers.base.FrameSource`, indexable by image index; every frame on the
    same (H, W) grid); pairs: (source, target) image indices.

    hubs: optional hub image indices (:func:`sopcorr.flow.cycle.cycle_hubs`); when given (even
    empty) the result also holds 'confirmations' (P, H, W) uint8, each pair's cycle
    confirmation counts (:mod:`sopcorr.flow.cycle`) through the hubs that are neither of its
    images, within ``cycle_tolerance`` cells of the target's grid. Every ordered pair (direct
    or leg) is computed once by the same matcher (:class:`~sopcorr.flow.cycle.LegCache`: a
    direct pair that is also a leg is reused, and a hub leg serves every pair that uses it),
    so target_xy / valid / score are exactly those of ``hubs=None``.

    The matcher's inner correspondences are shared too (:func:`share_planned`): the
    forward-backward check of (i, j) and that of (j, i) (a direct pair and its reverse, a leg to a
    hub and the leg back) match the same two ordered pairs, each computed once.

    stats: optional dict filled with 'pairs', 'matcher_calls' (all calls of ``matcher``),
    'leg_calls' and 'leg_seconds' (the calls for legs that are not direct pairs: the cost of
    the confirmation), 'peak_cached' (most correspondences held at once), 'hubs' and
    'inner_computed' / 'inner_served' (the inner matchers' correspondences computed / reused).

    Returns {'target_xy': (P, H, W, 2) float32, 'valid': (P, H, W) bool, 'score': (P, H, W)
    float32[, 'confirmations': (P, H, W) uint8]} in the layout of :func:`write_flow_store`.
    Progress (pairs, their rate) goes to the log; ``progress`` also shows a console bar."""
    n = len(frames)
    p = len(pairs)
    out: dict[str, np.ndarray] = {}
    from ..progress import progress as reporter

    cache = None
    if hubs is not None:
        from .cycle import LegCache, leg_uses

        hubs = [int(h) for h in hubs]
        bad = [h for h in hubs if not 0 <= h < n]
        if bad:
            raise SopcorrError(f"pseudo_flows: hub indices {bad} outside a category of {n} images")
        uses = leg_uses(pairs, hubs)
        matcher, shared = share_planned(matcher, frames, list(uses))
        cache = LegCache(matcher, frames, uses)
    else:
        matcher, shared = share_planned(matcher, frames, [(i, j) for i, j in pairs if 0 <= i < n and 0 <= j < n])
    it = reporter(enumerate(pairs), total=p, desc="pseudo flow", unit="pair", disable=not progress,
                  logger=log)
    for k, (i, j) in it:
        if not (0 <= i < n and 0 <= j < n) or i == j:
            raise SopcorrError(f"pseudo_flows: bad pair ({i}, {j}) for a category of {n} images")
        corr = matcher.correspondence(frames[i], frames[j]) if cache is None else cache.get(i, j)
        if not out:
            h, w = corr.valid.shape
            out = {"target_xy": np.zeros((p, h, w, 2), np.float32), "valid": np.zeros((p, h, w), bool),
                   "score": np.zeros((p, h, w), np.float32)}
            if cache is not None:
                out["confirmations"] = np.zeros((p, h, w), np.uint8)
        out["target_xy"][k] = corr.target_xy
        out["score"][k] = corr.score
        out["valid"][k] = corr.valid
        if cache is not None:
            out["confirmations"][k] = cache.confirmations(i, j, corr, hubs, cycle_tolerance, frames[j].grid)
    if not out:
        grid = frames[0].grid if n else None
        h, w = grid.shape if grid is not None else (0, 0)
        out = {"target_xy": np.zeros((0, h, w, 2), np.float32), "valid": np.zeros((0, h, w), bool),
               "score": np.zeros((0, h, w), np.float32)}
        if cache is not None:
            out["confirmations"] = np.zeros((0, h, w), np.uint8)
    if stats is not None:
        direct = {(int(i), int(j)) for i, j in pairs}
        stats["pairs"] = p
        stats["hubs"] = list(hubs or [])
        stats.update(inner_computed=shared.computed, inner_served=shared.served)
        if cache is None:
            stats.update(matcher_calls=p, leg_calls=0, leg_seconds=0.0, peak_cached=0)
        else:
            legs = [key for key in cache.counts if key not in direct]
            stats.update(matcher_calls=cache.calls, leg_calls=int(sum(cache.counts[key] for key in legs)),
                         leg_seconds=float(sum(cache.times[key] for key in legs)), peak_cached=cache.peak)
    return out


def share_planned(matcher, frames, calls: Sequence[tuple[int, int]]):
    """``matcher`` with its correspondences shared (:func:`~sopcorr.matchers.base.share_correspondences`)
    for the planned ``calls``: each ordered pair (i, j) of image indices that will be asked of
    it once (a :class:`~sopcorr.matchers.base.ForwardBackward` asks its inner matcher for (i, j)
    and (j, i), so the check of (j, i) reuses both of (i, j)'s). Every shared correspondence
    is the one the matcher computes (a read-only copy), so results are unchanged; a call
    outside the plan is computed as before. Returns (the shared matcher, its
    :class:`~sopcorr.matchers.base.SharedCorrespondences`: counters computed / served)."""
    from ..matchers.base import SharedCorrespondences, share_correspondences

    shared = SharedCorrespondences()
    out = share_correspondences(matcher, shared)
    for i, j in calls:
        shared.expect(out, frames[int(i)], frames[int(j)])
    return out, shared


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    return x


def write_flow_store(path: str | Path, pairs: Sequence[tuple[int, int]], target_xy: np.ndarray,
                     valid: np.ndarray, score: np.ndarray, image_ids: Sequence[str],
                     image_hw, input_size: int, stride: int, attrs: dict | None = None,
                     confirmations: np.ndarray | None = None, hubs: Sequence[int] | None = None,
                     cycle_tolerance: float | None = None, cycle_images: int | None = None) -> None:
    """Write a flow store atomically (layout in the module docstring).

    pairs (P, 2) image indices; target_xy (P, H, W, 2); valid (P, H, W); score (P, H, W);
    image_ids (N,), image_hw (N, 2): the category's images; input_size, stride: the feature
    geometry; attrs: extra attributes (mutual, min_similarity, ...).

    confirmations: optional (P, H, W) uint8 cycle confirmation counts, written with the attrs
    cycle_hubs (the ids of ``hubs``, image indices), cycle_hub_indices, cycle_tolerance (target
    cells) and cycle_images (K, default len(hubs)); without it the store is exactly the
    store of before the cycle confirmation (the cycle arguments must then be None)."""
    pairs = np.asarray(pairs, np.int32).reshape(-1, 2)
    target_xy = np.asarray(target_xy, np.float32)
    valid = np.asarray(valid, bool)
    score = np.asarray(score, np.float32)
    p = len(pairs)
    if target_xy.ndim != 4 or target_xy.shape[0] != p or target_xy.shape[3] != 2:
        raise ValueError(f"target_xy must be ({p}, H, W, 2), got {target_xy.shape}")
    h, w = target_xy.shape[1:3]
    if valid.shape != (p, h, w) or score.shape != (p, h, w):
        raise ValueError(f"valid {valid.shape} / score {score.shape} must be {(p, h, w)}")
    ids = [str(i) for i in image_ids]
    hw = np.asarray(image_hw, int).reshape(-1, 2)
    if len(ids) != len(hw):
        raise ValueError("image_ids and image_hw differ in length")
    if p and (pairs.min() < 0 or pairs.max() >= len(ids)):
        raise ValueError("pair indices out of range of image_ids")
    if confirmations is None:
        if hubs is not None or cycle_tolerance is not None or cycle_images is not None:
            raise ValueError("hubs / cycle_tolerance / cycle_images come with confirmations")
    else:
        conf = np.asarray(confirmations)
        if conf.shape != (p, h, w) or conf.dtype != np.uint8:
            raise ValueError(f"confirmations must be uint8 {(p, h, w)}, got {conf.dtype} {conf.shape}")
        if hubs is None or cycle_tolerance is None:
            raise ValueError("confirmations need their hubs and cycle_tolerance")
        hub_idx = [int(x) for x in hubs]
        if any(not 0 <= x < len(ids) for x in hub_idx):
            raise ValueError("hub indices out of range of image_ids")
    cp = max(1, min(p, 16))
    with atomic_path(path) as tmp:
        g = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        a = g.create_array("pairs", shape=(p, 2), chunks=(max(1, p), 2), dtype=np.int32,
                           dimension_names=["pair", "end"], fill_value=0)
        a[:] = pairs
        a = g.create_array("target_xy", shape=(p, h, w, 2), chunks=(cp, h, w, 2), dtype=np.float32,
                           dimension_names=["pair", "row", "col", "xy"], fill_value=0)
        a[:] = target_xy
        a = g.create_array("valid", shape=(p, h, w), chunks=(cp, h, w), dtype=bool,
                           dimension_names=["pair", "row", "col"], fill_value=False)
        a[:] = valid
        a = g.create_array("score", shape=(p, h, w), chunks=(cp, h, w), dtype=np.float32,
                           dimension_names=["pair", "row", "col"], fill_value=0)
        a[:] = score
        if confirmations is not None:
            a = g.create_array("confirmations", shape=(p, h, w), chunks=(cp, h, w), dtype=np.uint8,
                               dimension_names=["pair", "row", "col"], fill_value=0)
            a[:] = conf
        meta = {
            "image_ids": ids, "image_hw": hw.tolist(), "input_size": int(input_size),
            "stride": int(stride), "grid_shape": [int(h), int(w)],
            "pair_ids": [[ids[i], ids[j]] for i, j in pairs.tolist()],
            "convention": CONVENTION,
        }
        meta.update(_jsonable(attrs or {}))
        if confirmations is not None:
            meta.update(cycle_hubs=[ids[x] for x in hub_idx], cycle_hub_indices=hub_idx,
                        cycle_images=int(len(hub_idx) if cycle_images is None else cycle_images),
                        cycle_tolerance=float(cycle_tolerance))
        meta["complete"] = True
        g.attrs.update(meta)


class FlowStore:
    """Read access to a flow store; open with :meth:`FlowStore.open`.

    pairs (P, 2) int, pair_ids [(src_id, tgt_id)], image_ids, image_hw (N, 2), input_size,
    stride, attrs; target_xy / valid / score are the zarr arrays (index them per pair);
    confirmations the (P, H, W) uint8 cycle confirmation counts' zarr array, None for a store
    written without them (``flow.cycle_images: 0``, or before them); cycle_hubs the hub image
    indices ([] without them)."""

    def __init__(self, path: Path, group):
        self.path = path
        self.group = group
        self.attrs = dict(group.attrs)
        self.pairs = np.asarray(group["pairs"][:], np.int64).reshape(-1, 2)
        self.target_xy = group["target_xy"]
        self.valid = group["valid"]
        self.score = group["score"]
        self.confirmations = group["confirmations"] if "confirmations" in group else None
        self.cycle_hubs = [int(x) for x in self.attrs.get("cycle_hub_indices", [])]
        self.image_ids = list(self.attrs["image_ids"])
        self.image_hw = np.asarray(self.attrs["image_hw"], int).reshape(-1, 2)
        self.input_size = int(self.attrs["input_size"])
        self.stride = int(self.attrs["stride"])
        self.pair_ids = [tuple(p) for p in self.attrs["pair_ids"]]

    @classmethod
    def open(cls, path: str | Path) -> "FlowStore":
        path = Path(path)
        if not path.is_dir():
            raise DatasetError(f"{path}: flow store not found")
        try:
            group = zarr.open_group(str(path), mode="r")
            for name in ("pairs", "target_xy", "valid", "score"):
                group[name]
            attrs = dict(group.attrs)
        except Exception as exc:
            raise DatasetError(f"{path}: not a readable flow store ({type(exc).__name__}: {exc})") from None
        missing = [k for k in ("image_ids", "image_hw", "input_size", "stride", "pair_ids", "complete")
                   if k not in attrs]
        if missing:
            raise DatasetError(f"{path}: incomplete flow store (missing attrs: {missing})")
        return cls(path, group)

    def __len__(self) -> int:
        return len(self.pairs)

    def grid(self, i: int) -> FeatureGrid:
        """FeatureGrid of image ``i`` (the geometry the flows are defined on)."""
        h, w = self.image_hw[int(i)]
        return FeatureGrid(Letterbox(int(h), int(w), self.input_size), self.stride)

    def correspondence(self, p: int) -> DenseCorrespondence:
        """DenseCorrespondence of pair ``p`` (on its source image's grid)."""
        i = int(self.pairs[p, 0])
        return DenseCorrespondence(target_xy=np.asarray(self.target_xy[p], np.float32),
                                   score=np.asarray(self.score[p], np.float32),
                                   valid=np.asarray(self.valid[p], bool), grid=self.grid(i))

    def upsampled(self, p: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair ``p``'s flow at input size ``size`` (see :func:`upsample_to_input`)."""
        j = int(self.pairs[p, 1])
        return upsample_to_input(self.correspondence(p), size, tuple(self.image_hw[j]))


def upsample_to_input(corr: DenseCorrespondence, size: int, target_hw: tuple[int, int]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Resample a correspondence to a dense flow at the letterboxed input resolution ``size``.

    Both images are letterboxed at ``size`` (``Letterbox(h, w, size)``: scaled by size/max(h, w),
    top-left). Returns flow (S, S, 2) float32 and valid (S, S) bool with the convention
    ``flow[y, x] = (dx, dy)``: source input pixel (x, y) maps to target input pixel
    (x + dx, y + dy) of the target's own letterbox at the same size S. target_hw: the target
    image's (h, w). Each pixel takes the bilinear interpolation of the per-cell displacements
    in size-S input pixels (target letterbox point minus source cell centre) of the valid
    cells around it (weights renormalised over valid cells; beyond the outermost cell centres
    the displacement is held constant); it is valid when the valid cells carry at least half
    of the bilinear weight and the pixel lies on the source image (not on the letterbox
    padding). flow is 0 where not valid."""
    src = corr.grid.letterbox
    src_lb = Letterbox(src.height, src.width, int(size))
    tgt_lb = Letterbox(int(target_hw[0]), int(target_hw[1]), int(size))
    s = int(size)
    xs, ys = np.meshgrid(np.arange(s, dtype=np.float64), np.arange(s, dtype=np.float64))
    pix = np.stack([xs, ys], -1).reshape(-1, 2)
    cr = corr.grid.image_to_cell(src_lb.input_to_image(pix))
    v = np.asarray(corr.valid, bool)
    # displacement per cell in input pixels of the size-S letterboxes, interpolated (so a
    # translation or scaling is reproduced exactly, up to the image borders)
    tgt_in = tgt_lb.image_to_input(np.nan_to_num(np.asarray(corr.target_xy, np.float64)))
    src_in = src_lb.image_to_input(corr.grid.cell_centers_image())
    disp = np.where(v[..., None], tgt_in - src_in, 0.0)
    field = np.concatenate([disp, v[..., None].astype(np.float64)], axis=-1)    # (H, W, 3)
    smp = bilinear_sample(field, cr)                                            # (S*S, 3)
    wsum = smp[:, 2]
    ok = wsum >= 0.5
    rh, rw = src_lb.resized_hw
    ok &= (pix[:, 0] <= rw - 1) & (pix[:, 1] <= rh - 1)
    flow = np.where(ok[:, None], smp[:, :2] / np.maximum(wsum, 1e-12)[:, None], 0.0)
    return flow.reshape(s, s, 2).astype(np.float32), ok.reshape(s, s)
