"""The viewer's compact encoding of dense correspondences (numpy only, no torch).

For one category and one method, every ordered pair (s, t), s != t, of the viewer's n images
stores, for each cell of the source's feature grid (H x W cells, row-major), three bytes:

* ``qx, qy``: the matched target point in the target's *original* image pixels, quantised to
  256 levels over the image: ``q = clip(round((x + 0.5) * 255 / w), 0, 255)``, decoded as
  ``x = q * w / 255 - 0.5`` (w: the target image's width; y alike with its height). A point
  inside the image, ``x`` in ``[-0.5, w - 0.5]``, comes back within half a step,
  ``w / 510`` px (:func:`position_error_px`): 0.5 px for a 256 px image.
* ``qs``: 0 when the method marks the match invalid, else the score quantised to 1..255
  linearly between the lowest and highest valid score of the category and method
  (``lo``/``hi``, stored with the data): ``qs = 1 + round((s - lo) / (hi - lo) * 254)``.

The pairs follow each other source by source, targets in increasing index skipping the source:
pair (s, t) starts at byte ``((s * (n - 1) + t - (t > s)) * H * W) * 3``. The whole array,
shape ``(n, n - 1, H * W, 3)`` uint8, is base64 text in the viewer's data file: ``3 * H * W``
bytes per ordered pair (4/3 of that as base64), e.g. 768 bytes (1 024 as text) for the default
16 x 16 grid.
"""
from __future__ import annotations

import base64

import numpy as np

__all__ = ["pair_offset", "quantise_xy", "dequantise_xy", "quantise_score", "dequantise_score",
           "position_error_px", "encode_pairs", "decode_pairs", "b64"]

#: quantisation levels of a coordinate and of a score
LEVELS = 255


def pair_offset(s: int, t: int, n: int) -> int:
    """Index of ordered pair (s, t), s != t, among the n * (n - 1) pairs of n images."""
    if s == t or not (0 <= s < n and 0 <= t < n):
        raise ValueError(f"no pair ({s}, {t}) among {n} images")
    return s * (n - 1) + t - (1 if t > s else 0)


def quantise_xy(xy: np.ndarray, wh: tuple[float, float]) -> np.ndarray:
    """(..., 2) image points (x, y) of an image of size ``wh`` = (w, h) -> (..., 2) uint8.
    Non-finite values become 0."""
    xy = np.asarray(xy, dtype=np.float64)
    size = np.asarray(wh, dtype=np.float64)
    q = np.rint((xy + 0.5) * LEVELS / size)
    q = np.where(np.isfinite(q), q, 0)
    return np.clip(q, 0, LEVELS).astype(np.uint8)


def dequantise_xy(q: np.ndarray, wh: tuple[float, float]) -> np.ndarray:
    """Inverse of :func:`quantise_xy`: (..., 2) uint8 -> (..., 2) float64 image points."""
    return np.asarray(q, dtype=np.float64) * np.asarray(wh, dtype=np.float64) / LEVELS - 0.5


def position_error_px(wh: tuple[float, float]) -> tuple[float, float]:
    """The largest error (x, y) in pixels of a quantised point inside an image of size
    ``wh``: half a quantisation step, ``(w / 510, h / 510)``."""
    return (float(wh[0]) / (2 * LEVELS), float(wh[1]) / (2 * LEVELS))


def quantise_score(score: np.ndarray, valid: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(...) scores and validity -> (...) uint8: 0 where invalid (or not finite), else
    1..255 linearly over [lo, hi]."""
    score = np.asarray(score, dtype=np.float64)
    span = max(float(hi) - float(lo), 1e-12)
    q = 1 + np.rint(np.clip((score - lo) / span, 0, 1) * (LEVELS - 1))
    ok = np.asarray(valid, bool) & np.isfinite(score)
    return np.where(ok, q, 0).astype(np.uint8)


def dequantise_score(q: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`quantise_score`: (score (...) float64, NaN where invalid; valid (...) bool)."""
    q = np.asarray(q)
    valid = q > 0
    s = lo + (q.astype(np.float64) - 1) / (LEVELS - 1) * (float(hi) - float(lo))
    return np.where(valid, s, np.nan), valid


def encode_pairs(target_xy: np.ndarray, score: np.ndarray, valid: np.ndarray, sizes_wh: np.ndarray,
                 lo: float, hi: float) -> np.ndarray:
    """Encode the dense correspondences of every ordered pair of n images.

    target_xy: (n, n - 1, H, W, 2) target image points of pair (s, t) at
    ``[s, t - (t > s)]``; score, valid: (n, n - 1, H, W); sizes_wh: (n, 2) image (w, h);
    lo, hi: the score range. Returns (n, n - 1, H * W, 3) uint8 (qx, qy, qs)."""
    target_xy = np.asarray(target_xy)
    n = target_xy.shape[0]
    sizes_wh = np.asarray(sizes_wh, dtype=np.float64)
    if target_xy.shape[1] != n - 1 or sizes_wh.shape != (n, 2):
        raise ValueError(f"encode_pairs: target_xy {target_xy.shape} / sizes {sizes_wh.shape} "
                         f"do not describe the ordered pairs of {n} images")
    h, w = target_xy.shape[2:4]
    # the target image of slot [s, j] is j + (j >= s)
    tgt = np.arange(n - 1)[None, :] + (np.arange(n - 1)[None, :] >= np.arange(n)[:, None])
    wh = sizes_wh[tgt][:, :, None, None, :]                     # (n, n-1, 1, 1, 2)
    qxy = quantise_xy(target_xy, wh)
    qs = quantise_score(score, valid, lo, hi)
    out = np.concatenate([qxy, qs[..., None]], axis=-1)          # (n, n-1, H, W, 3)
    return np.ascontiguousarray(out.reshape(n, n - 1, h * w, 3))


def decode_pairs(data: np.ndarray, sizes_wh: np.ndarray, lo: float, hi: float):
    """Inverse of :func:`encode_pairs`: (n, n - 1, HW, 3) uint8 -> (target_xy (n, n - 1, HW, 2),
    score (n, n - 1, HW) with NaN where invalid, valid (n, n - 1, HW))."""
    data = np.asarray(data)
    n = data.shape[0]
    sizes_wh = np.asarray(sizes_wh, dtype=np.float64)
    tgt = np.arange(n - 1)[None, :] + (np.arange(n - 1)[None, :] >= np.arange(n)[:, None])
    xy = dequantise_xy(data[..., :2], sizes_wh[tgt][:, :, None, :])
    score, valid = dequantise_score(data[..., 2], lo, hi)
    return xy, score, valid


def b64(arr: np.ndarray) -> str:
    """Base64 text of a uint8 array's bytes (C order)."""
    return base64.b64encode(np.ascontiguousarray(arr, dtype=np.uint8).tobytes()).decode("ascii")
