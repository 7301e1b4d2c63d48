"""Dense ground truth of the synthetic benchmark: part-label and canonical-coordinate maps,
and the dense correspondence between two instances they define."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError


def read_parts(path: str | Path) -> np.ndarray:
    """(H, W) uint8 part labels (0 = background / occluded) from a label PNG."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DatasetError(f"{path}: part-label image not found") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable part-label image ({exc})") from None
    if arr.ndim != 2:
        raise DatasetError(f"{path}: part-label image must be single-channel, got shape {arr.shape}")
    return arr.astype(np.uint8, copy=False)


def read_canonical(path: str | Path) -> np.ndarray:
    """(H, W, 2) float32 template coordinates per pixel (NaN off the visible object)."""
    path = Path(path)
    try:
        arr = np.load(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: canonical-coordinate map not found") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable canonical-coordinate map ({exc})") from None
    if arr.ndim != 3 or arr.shape[2] != 2:
        raise DatasetError(f"{path}: canonical map must have shape (H, W, 2), got {arr.shape}")
    return arr.astype(np.float32, copy=False)


def dense_correspondence(canon_src: np.ndarray, parts_src: np.ndarray, canon_tgt: np.ndarray,
                         parts_tgt: np.ndarray, max_dist: float | None = 0.05) -> np.ndarray:
    """Ground-truth target position of every source pixel.

    canon_src: (H, W, 2) template coordinates of the source (NaN off the object)
    parts_src: (H, W) part labels of the source (0 = none)
    canon_tgt, parts_tgt: the same for the target, (H', W', 2) and (H', W')
    max_dist:  a source pixel whose nearest same-part target pixel is farther than this in
               template units (the template is about 2 units long; 0.05 is a few pixels) is
               not visible in the target; None keeps every match.
    Returns (H, W, 2) float32 target image coordinates (x, y) for each source pixel visible
    in both images (same part, nearest canonical coordinate), NaN elsewhere.
    """
    from scipy.spatial import cKDTree

    h, w = parts_src.shape
    out = np.full((h, w, 2), np.nan, np.float32)
    ok_s = (parts_src > 0) & np.isfinite(canon_src).all(-1)
    ok_t = (parts_tgt > 0) & np.isfinite(canon_tgt).all(-1)
    for lab in np.unique(parts_src[ok_s]):
        ty, tx = np.nonzero(ok_t & (parts_tgt == lab))
        if len(ty) == 0:
            continue
        sy, sx = np.nonzero(ok_s & (parts_src == lab))
        tree = cKDTree(canon_tgt[ty, tx].astype(np.float64))
        d, j = tree.query(canon_src[sy, sx].astype(np.float64), k=1)
        keep = np.ones(len(d), bool) if max_dist is None else d <= max_dist
        out[sy[keep], sx[keep], 0] = tx[j[keep]]
        out[sy[keep], sx[keep], 1] = ty[j[keep]]
    return out
