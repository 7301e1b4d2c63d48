"""Keypoint transfer through dense correspondences, the location prior, and aggregation over
retrieved neighbours (paper section 6; Long et al. 2014's protocol).

Conventions: P keypoint names of a category (in the category's declared order), K neighbours.
Coordinates are image pixels (x, y).

Aggregation (one query, one keypoint name), given the K neighbours' transferred points x_k with
scores s_k and an indicator ok_k (the neighbour has the keypoint visible and its match is valid):

* with the prior, s_k <- s_k * g_k where g_k = exp(-1/2 sum(((u_k - mu) / sd)^2)) is a Gaussian over
  box-normalised positions u (mu, sd: mean and per-axis std of the neighbours' own box-normalised
  positions of that name, sd floored at ``sigma_min``); without it g_k = 1;
* location = sum(ok_k g_k x_k) / sum(ok_k g_k)   (the paper's average of the locations);
* score    = sum(ok_k s_k) / K                    (the average of the scores; a neighbour without
  the keypoint contributes 0, so names few neighbours have score low).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import DenseCorrespondence


def transfer_points(corr: DenseCorrespondence, points_xy: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map source points (M, 2) to the target: returns xy (M, 2), score (M,), ok (M,) bool.

    ``ok`` is False where the point's nearest source cell has no valid match or the mapped
    point is not finite (mutual-NN correspondences leave cells undefined)."""
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0, bool)
    xy, score = corr.transfer(pts)
    cr = corr.grid.image_to_cell(pts)
    h, w = corr.valid.shape
    c = np.clip(np.rint(cr[:, 0]).astype(int), 0, w - 1)
    r = np.clip(np.rint(cr[:, 1]).astype(int), 0, h - 1)
    ok = np.asarray(corr.valid, bool)[r, c] & np.isfinite(xy).all(axis=1) & np.isfinite(score)
    xy = np.where(ok[:, None], xy, np.nan)
    score = np.where(ok, score, np.nan)
    return xy, score, ok


def box_normalise(xy: np.ndarray, bbox) -> np.ndarray:
    """(..., 2) image points -> (..., 2) positions relative to the box ((0,0) top-left, (1,1)
    bottom-right)."""
    x0, y0, x1, y1 = (float(v) for v in bbox)
    wh = np.array([max(x1 - x0, 1e-6), max(y1 - y0, 1e-6)])
    return (np.asarray(xy, dtype=np.float64) - np.array([x0, y0])) / wh


@dataclass
class NeighbourTransfer:
    """Keypoints of K neighbours mapped into one query.

    xy: (K, P, 2) transferred points (NaN where not ok); score: (K, P); ok: (K, P) bool;
    src_norm: (K, P, 2) the neighbours' own box-normalised keypoint positions (NaN if not
    visible)."""

    xy: np.ndarray
    score: np.ndarray
    ok: np.ndarray
    src_norm: np.ndarray


def transfer_from_neighbours(correspondences, neighbour_kps, neighbour_boxes) -> NeighbourTransfer:
    """correspondences: K DenseCorrespondence neighbour -> query; neighbour_kps: (K, P, 3)
    x, y, visible of each neighbour; neighbour_boxes: (K, 4)."""
    kps = np.asarray(neighbour_kps, dtype=np.float64)
    K, P = kps.shape[:2]
    xy = np.full((K, P, 2), np.nan)
    score = np.full((K, P), np.nan)
    ok = np.zeros((K, P), bool)
    src_norm = np.full((K, P, 2), np.nan)
    for k, corr in enumerate(correspondences):
        vis = kps[k, :, 2] > 0
        if not vis.any():
            continue
        t_xy, t_s, t_ok = transfer_points(corr, kps[k, vis, :2])
        xy[k, vis], score[k, vis], ok[k, vis] = t_xy, t_s, t_ok
        src_norm[k, vis] = box_normalise(kps[k, vis, :2], neighbour_boxes[k])
    return NeighbourTransfer(xy, score, ok, src_norm)


def prior_weights(nt: NeighbourTransfer, query_box, sigma_min: float = 0.1) -> np.ndarray:
    """(K, P) Gaussian location prior g_k in [0, 1] of each transferred point (see module doc);
    1 where a name has no statistics."""
    src = nt.src_norm
    have = np.isfinite(src).all(axis=2)                                     # (K, P)
    cnt = have.sum(axis=0)                                                   # (P,)
    safe = np.where(have[..., None], src, 0.0)
    mu = safe.sum(axis=0) / np.maximum(cnt, 1)[:, None]                      # (P, 2)
    var = (np.where(have[..., None], (src - mu) ** 2, 0.0)).sum(axis=0) / np.maximum(cnt, 1)[:, None]
    sd = np.maximum(np.sqrt(var), sigma_min)
    u = box_normalise(nt.xy, query_box)                                      # (K, P, 2)
    g = np.exp(-0.5 * (((u - mu) / sd) ** 2).sum(axis=2))
    g = np.where(cnt[None, :] > 0, g, 1.0)
    return np.where(nt.ok, g, 0.0)


def aggregate(nt: NeighbourTransfer, prior: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Average over neighbours: returns xy (P, 2) (NaN where no neighbour contributes) and
    score (P,) (see module doc)."""
    K = nt.ok.shape[0]
    g = np.where(nt.ok, 1.0 if prior is None else prior, 0.0)               # (K, P)
    s = np.where(nt.ok, np.nan_to_num(nt.score) * g, 0.0)
    score = s.sum(axis=0) / max(K, 1)
    wsum = g.sum(axis=0)
    # a prior that vanishes everywhere falls back to the plain average
    g = np.where((wsum > 1e-12)[None, :], g, nt.ok.astype(float))
    wsum = g.sum(axis=0)
    xy = (np.nan_to_num(nt.xy) * g[..., None]).sum(axis=0) / np.where(wsum > 0, wsum, 1.0)[:, None]
    xy[wsum <= 0] = np.nan
    return xy, score
