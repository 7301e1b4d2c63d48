"""Percentage of correct keypoints (PCK).

A predicted keypoint is correct when its distance to the ground truth is at most
``alpha * max(box height, box width)`` of the reference box (Long et al. 2014; PF-WILLOW uses the
target's keypoint box). Only visible ground-truth keypoints count; a visible keypoint without a
prediction (NaN) counts as wrong.
"""
from __future__ import annotations

import numpy as np


def box_size(bbox) -> float:
    """max(height, width) of an (xmin, ymin, xmax, ymax) box."""
    x0, y0, x1, y1 = bbox
    return float(max(x1 - x0, y1 - y0))


def correct_keypoints(pred_xy: np.ndarray, gt_xy: np.ndarray, visible: np.ndarray,
                      bbox, alpha: float) -> np.ndarray:
    """Boolean (K,) correctness of predictions (K, 2) against ground truth (K, 2) for the
    visible entries; invisible entries are returned False and must be excluded by the caller
    with ``visible``."""
    pred_xy = np.asarray(pred_xy, dtype=np.float64).reshape(-1, 2)
    gt_xy = np.asarray(gt_xy, dtype=np.float64).reshape(-1, 2)
    vis = np.asarray(visible).astype(bool).reshape(-1)
    thr = alpha * box_size(bbox)
    d = np.linalg.norm(pred_xy - gt_xy, axis=1)
    ok = np.where(np.isnan(d), False, d <= thr)
    return ok & vis


def pck(pred_xy, gt_xy, visible, bbox, alpha: float) -> tuple[int, int]:
    """(number correct, number of visible ground-truth keypoints) for one image/pair."""
    vis = np.asarray(visible).astype(bool).reshape(-1)
    return int(correct_keypoints(pred_xy, gt_xy, vis, bbox, alpha).sum()), int(vis.sum())
