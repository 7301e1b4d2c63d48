"""The position colour map of the dense-correspondence figures (the paper's Figures 1/2):
every point of image A's box gets a colour by where it lies; image B is painted with the colour
of its match in A (``sopcorr match`` and the evaluation's correspondence figures)."""
from __future__ import annotations

import numpy as np

#: points mapped per call of a correspondence's ``transfer`` by :func:`colour_by_match`: the
#: correlation network's read-out builds a (points, target cells) row per point, and batches
#: of this size stay in cache (every point's result is the same whatever the batch)
TRANSFER_BATCH = 2048


def position_colours(xy: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
    """Colour of image points by their position in ``box`` (x0, y0, x1, y1).

    xy (..., 2) -> (rgb (..., 3) float in [0, 1], inside (...) bool). The map is smooth and
    injective over the box: red grows to the right, green downwards, blue opposite to both."""
    x0, y0, x1, y1 = box
    u = (xy[..., 0] - x0) / max(x1 - x0, 1e-9)
    v = (xy[..., 1] - y0) / max(y1 - y0, 1e-9)
    inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1) & np.isfinite(u) & np.isfinite(v)
    u, v = np.clip(np.nan_to_num(u), 0, 1), np.clip(np.nan_to_num(v), 0, 1)
    rgb = np.stack([0.1 + 0.9 * u, 0.1 + 0.9 * v, 1.0 - 0.45 * (u + v)], -1)
    return rgb, inside


def pixel_coords(h: int, w: int) -> np.ndarray:
    """(h, w, 2) float64 (x, y) of every pixel."""
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs, ys], -1).astype(np.float64)


def overlay(img: np.ndarray, rgb: np.ndarray, mask: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """uint8 (h, w, 3) image blended with ``rgb`` (h, w, 3) where ``mask``: float32 (h, w, 3)."""
    out = img.astype(np.float32) * np.float32(1 / 255.0)
    out[mask] = np.float32(1 - alpha) * out[mask] + np.float32(alpha) * rgb[mask].astype(np.float32)
    return out


def in_box(xy: np.ndarray, box) -> np.ndarray:
    """(...) bool: the points ``xy`` (..., 2) inside ``box`` (x0, y0, x1, y1), edges included."""
    x0, y0, x1, y1 = box
    return (xy[..., 0] >= x0) & (xy[..., 0] <= x1) & (xy[..., 1] >= y0) & (xy[..., 1] <= y1)


def colour_by_match(corr_ba, xy_b: np.ndarray, box_a, box_b=None) -> tuple[np.ndarray, np.ndarray]:
    """Colours (..., 3) and mask (...) of B's points ``xy_b`` (..., 2) by the position of their
    match (``corr_ba``: B -> A) in ``box_a``; only points inside ``box_b`` (default: all) with a
    valid match are coloured (the colours of the others mean nothing). Only the points inside
    ``box_b`` are mapped, :data:`TRANSFER_BATCH` at a time."""
    from ..evaluate.transfer import transfer_points

    xy_b = np.asarray(xy_b, dtype=np.float64)
    shape = xy_b.shape[:-1]
    pts = xy_b.reshape(-1, 2)
    todo = np.flatnonzero(in_box(pts, box_b) if box_b is not None else np.ones(len(pts), bool))
    to_a = np.full(pts.shape, np.nan)
    ok = np.zeros(len(pts), bool)
    for i in range(0, len(todo), TRANSFER_BATCH):
        sel = todo[i:i + TRANSFER_BATCH]
        to_a[sel], _, ok[sel] = transfer_points(corr_ba, pts[sel])
    rgb, inside = position_colours(to_a.reshape(*shape, 2), box_a)
    return rgb, inside & ok.reshape(shape)
