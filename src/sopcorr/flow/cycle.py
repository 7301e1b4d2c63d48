"""Collection-consistent pseudo ground truth (FlowWeb-style cycle confirmation, issue 23).

The pseudo-ground-truth matcher keeps a match of source cell x of image A -> B when it is
forward-backward consistent within the pair. This module checks a match against the rest of
the collection: it is **confirmed by an intermediate image C** when composing A -> C, then
C -> B lands within ``tolerance`` cells of B's grid (Euclidean) of the direct A -> B match,
both legs being valid at the cells used (A -> C valid at x; C -> B valid at the C cell, the
nearest one, that A -> C lands in). The **confirmation count** of x is how many intermediates
confirm it (uint8).

Cost: the intermediates are not every image of the category but a few **hubs**: per
category ``K`` images (``flow.cycle_images``) drawn by :func:`cycle_hubs` from the images the
pairs are drawn from. A pair (A, B) uses every hub that is neither A nor B (at most K
intermediates). Each ordered leg A -> h, h -> B is computed once per category with the same
pseudo-ground-truth matcher as the direct flows (so the legs are forward-backward checked like
them) and shared by every pair that uses it (:class:`LegCache`): at most 2 K (N - 1) extra
matcher calls per category of N images, instead of 2 K per pair.

Units: target coordinates are *image* pixels (x, y) of the target image, as in
:class:`~sopcorr.geometry.DenseCorrespondence`; distances and the tolerance are in cells of the
target image's feature grid (``FeatureGrid``: ``stride / scale`` image pixels per cell).
"""
from __future__ import annotations

import time
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterable, Sequence

import numpy as np

from ..errors import ConfigError, SopcorrError
from ..geometry import DenseCorrespondence, FeatureGrid

__all__ = ["CycleParams", "cycle_hubs", "pair_hubs", "leg_uses", "compose", "confirmation_counts",
           "LegCache", "HUB_SALT", "MAX_CYCLE_IMAGES"]

#: salt of the hub draw (a SeedSequence spawn key), so that the category seed that draws the
#: pairs (:func:`sopcorr.flow.pseudo.category_seed`) gives an independent draw of hubs
HUB_SALT = zlib.crc32(b"sopcorr.flow.cycle.hubs")
#: confirmation counts are uint8
MAX_CYCLE_IMAGES = 255


@dataclass(frozen=True)
class CycleParams:
    """Settings of the cycle confirmation: ``images`` hubs per category (K; 0 = off) and the
    ``tolerance`` in target cells. ``SCHEMA``: the config key of each field (defaults equal)."""

    images: int = 0
    tolerance: float = 1.5

    SCHEMA: ClassVar[dict[str, str]] = {"images": "flow.cycle_images", "tolerance": "flow.cycle_tolerance"}

    def __post_init__(self):
        if not 0 <= int(self.images) <= MAX_CYCLE_IMAGES:
            raise ConfigError(f"config error: flow.cycle_images: must be in [0, {MAX_CYCLE_IMAGES}], got {self.images}")
        if not float(self.tolerance) > 0:
            raise ConfigError(f"config error: flow.cycle_tolerance: must be > 0, got {self.tolerance}")

    @classmethod
    def from_config(cls, values: dict) -> "CycleParams":
        """From ``{'cycle_images': K, 'cycle_tolerance': t}`` (missing keys: the defaults)."""
        by_key = {key.rsplit(".", 1)[-1]: name for name, key in cls.SCHEMA.items()}
        unknown = sorted(set(values) - set(by_key))
        if unknown:
            raise ConfigError(f"config error: CycleParams: unknown setting(s) {unknown}")
        kw = {by_key[k]: v for k, v in values.items()}
        if "images" in kw:
            kw["images"] = int(kw["images"])
        if "tolerance" in kw:
            kw["tolerance"] = float(kw["tolerance"])
        return cls(**kw)


def cycle_hubs(n_images: int, k: int, seed, ids: Sequence[int] | None = None) -> list[int]:
    """The K hub images of a category: ``min(k, pool size)`` distinct image indices, sorted.

    n_images: images are 0 .. n_images - 1; k: how many hubs; seed: an int or a sequence of
    ints (e.g. :func:`sopcorr.flow.pseudo.category_seed`), salted here with :data:`HUB_SALT` so
    the draw differs from the pair draw of the same seed; ids: optional pool of image indices
    (the train split when the pairs are drawn from it). The draw is a seeded permutation of the
    pool, of which the first k are taken: the hubs of a smaller k are a subset of those of a
    larger one (same seed)."""
    pool = np.arange(n_images) if ids is None else np.unique(np.asarray(list(ids), dtype=np.int64))
    if pool.size and (pool.min() < 0 or pool.max() >= n_images):
        raise SopcorrError(f"cycle_hubs: image indices must lie in [0, {n_images}), got {pool.min()}..{pool.max()}")
    if k <= 0 or pool.size == 0:
        return []
    entropy = [int(seed)] if np.isscalar(seed) else [int(s) for s in seed]
    rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(HUB_SALT,)))
    return sorted(int(i) for i in rng.permutation(pool)[:int(k)])


def pair_hubs(i: int, j: int, hubs: Iterable[int]) -> list[int]:
    """The intermediates of pair (i, j): every hub that is neither i nor j (hub order)."""
    return [int(h) for h in hubs if h != i and h != j]


def leg_uses(pairs: Sequence[tuple[int, int]], hubs: Sequence[int], direct: bool = True) -> Counter:
    """How often each ordered pair (a, b) is asked for when confirming ``pairs`` with ``hubs``:
    the legs (i, h) and (h, j) of every pair and hub h of :func:`pair_hubs`, plus (with
    ``direct``) the pair itself once."""
    uses: Counter = Counter()
    for i, j in pairs:
        if direct:
            uses[(int(i), int(j))] += 1
        for h in pair_hubs(i, j, hubs):
            uses[(int(i), h)] += 1
            uses[(h, int(j))] += 1
    return uses


def compose(ac: DenseCorrespondence, cb: DenseCorrespondence) -> tuple[np.ndarray, np.ndarray]:
    """A -> C followed by C -> B, on A's grid.

    ac: (H, W) correspondence A -> C (on A's grid, targets in C's image pixels); cb: (H', W')
    correspondence C -> B (on C's grid, targets in B's image pixels). Each A cell goes to the
    C cell nearest to where A -> C lands (clamped to C's grid, as
    ``cb.transfer(mode='nearest')``) and takes that cell's C -> B match.

    Returns target_xy (H, W, 2) float64 B image pixels (x, y) (0 where not valid) and valid
    (H, W) bool: A -> C valid at the A cell, C -> B valid at the C cell, both finite."""
    h, w = np.asarray(ac.valid).shape
    xy = np.asarray(ac.target_xy, np.float64).reshape(-1, 2)
    finite = np.isfinite(xy).all(axis=1)
    cr = cb.grid.image_to_cell(np.where(finite[:, None], xy, 0.0))
    hc, wc = np.asarray(cb.valid).shape
    c = np.clip(np.rint(cr[:, 0]).astype(np.int64), 0, wc - 1)
    r = np.clip(np.rint(cr[:, 1]).astype(np.int64), 0, hc - 1)
    out = np.asarray(cb.target_xy, np.float64)[r, c]
    ok = np.asarray(ac.valid, bool).reshape(-1) & finite & np.asarray(cb.valid, bool)[r, c]
    ok &= np.isfinite(out).all(axis=1)
    out[~ok] = 0.0
    return out.reshape(h, w, 2), ok.reshape(h, w)


def confirmation_counts(ab: DenseCorrespondence, legs: Sequence[tuple[DenseCorrespondence, DenseCorrespondence]],
                        tolerance: float, target_grid: FeatureGrid) -> np.ndarray:
    """(H, W) uint8: per source cell of ``ab`` (A -> B, on A's grid), how many legs (A -> C,
    C -> B) confirm its match (:func:`compose` valid and within ``tolerance`` cells of
    ``target_grid``, B's grid, of ``ab.target_xy``; Euclidean distance in cells).

    Counted at every cell whose direct target is finite, whether ``ab.valid`` or not (combine
    with ``ab.valid`` to count the confirmed matches of the teacher). ``len(legs)`` must be at
    most 255."""
    if len(legs) > MAX_CYCLE_IMAGES:
        raise SopcorrError(f"confirmation_counts: {len(legs)} legs; at most {MAX_CYCLE_IMAGES} fit a uint8 count")
    direct = target_grid.image_to_cell(np.asarray(ab.target_xy, np.float64))         # (H, W, 2) cells
    count = np.zeros(np.asarray(ab.valid).shape, np.uint8)
    for ac, cb in legs:
        xy, ok = compose(ac, cb)
        d = np.linalg.norm(target_grid.image_to_cell(xy) - direct, axis=-1)
        with np.errstate(invalid="ignore"):
            count += ok & (d <= tolerance)
    return count


class LegCache:
    """The correspondences of one category's ordered pairs, each computed once.

    matcher: the pseudo-ground-truth matcher (``correspondence(src_frame, tgt_frame)``); frames:
    indexable by image index; uses: how often each ordered pair (a, b) will be asked for
    (:func:`leg_uses`). An entry is kept while uses remain and dropped at its last use (a pair
    asked for more often than planned is computed again: correctness never depends on the
    plan). :meth:`put` hands in a correspondence computed elsewhere (a flow store's direct
    pair). Counters: ``calls`` matcher calls (``counts`` per ordered pair), ``seconds`` their
    time (``times`` per ordered pair), ``served`` answers from the cache, ``peak`` the most entries held at once
    (each about H * W * 13 bytes)."""

    def __init__(self, matcher, frames, uses: Counter | None = None):
        self.matcher = matcher
        self.frames = frames
        self.remaining: Counter = Counter(uses or {})
        self.store: dict[tuple[int, int], DenseCorrespondence] = {}
        self.times: dict[tuple[int, int], float] = {}
        self.counts: Counter = Counter()
        self.calls = 0
        self.served = 0
        self.peak = 0

    @property
    def seconds(self) -> float:
        return float(sum(self.times.values()))

    def _keep(self, key, corr: DenseCorrespondence) -> None:
        if self.remaining[key] > 0:
            self.store[key] = corr
            self.peak = max(self.peak, len(self.store))
        else:
            self.remaining.pop(key, None)

    def put(self, i: int, j: int, corr: DenseCorrespondence) -> None:
        """Keep ``corr`` (i -> j) for its planned uses (nothing when none is planned)."""
        self._keep((int(i), int(j)), corr)

    def get(self, i: int, j: int, make: Callable[[], DenseCorrespondence] | None = None) -> DenseCorrespondence:
        """The correspondence i -> j (one planned use): from the cache, or computed by the
        matcher (``make`` overrides how) and kept when uses remain. Never mutate it."""
        key = (int(i), int(j))
        if key in self.store:
            corr = self.store[key]
            self.served += 1
            self.remaining[key] -= 1
            if self.remaining[key] <= 0:
                del self.store[key]
                del self.remaining[key]
            return corr
        t0 = time.perf_counter()
        corr = make() if make is not None else self.matcher.correspondence(self.frames[key[0]], self.frames[key[1]])
        self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - t0
        self.counts[key] += 1
        self.calls += 1
        self.remaining[key] -= 1
        self._keep(key, corr)
        return corr

    def confirmations(self, i: int, j: int, ab: DenseCorrespondence, hubs: Sequence[int], tolerance: float,
                      target_grid: FeatureGrid) -> np.ndarray:
        """(H, W) uint8 confirmation counts of pair (i, j)'s correspondence ``ab`` by the hubs
        of :func:`pair_hubs` (legs from this cache)."""
        legs = [(self.get(i, h), self.get(h, j)) for h in pair_hubs(i, j, hubs)]
        return confirmation_counts(ab, legs, tolerance, target_grid)
