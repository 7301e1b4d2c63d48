"""Pair-wise PCK (the PF-WILLOW / PF-PASCAL / SPair protocol, issue 6 item 5).

For an ordered pair (source, target) of the dataset's ``pairs``, the source's keypoints that are
visible in both images are mapped through the method's correspondence source -> target; a
keypoint is correct within alpha * max(target box h, w). A point the method leaves undefined
counts as wrong. A category's PCK pools the keypoints of all its pairs (correct / total); each
record also carries ``per_pair``, every pair's own PCK (%) over its keypoints visible in both
(pairs without such keypoints left out), from which the tables' ``per_pair`` column averages
over all pairs of all categories (the PF-WILLOW / PF-PASCAL / SPair papers' number).
"""
from __future__ import annotations

import logging

import numpy as np

from ..geometry import DenseCorrespondence
from .pck import correct_keypoints
from .transfer import transfer_points

log = logging.getLogger(__name__)


def pair_counts(corr: DenseCorrespondence, src_kps: np.ndarray, tgt_kps: np.ndarray,
                tgt_bbox, alphas) -> dict[float, tuple[int, int]]:
    """src_kps, tgt_kps: (P, 3) x, y, visible over the same names. Returns
    {alpha: (correct, total)} over the names visible in both."""
    s = np.asarray(src_kps, dtype=np.float64)
    t = np.asarray(tgt_kps, dtype=np.float64)
    both = (s[:, 2] > 0) & (t[:, 2] > 0)
    out = {}
    if not both.any():
        return {a: (0, 0) for a in alphas}
    xy, _, ok = transfer_points(corr, s[both, :2])
    xy = np.where(ok[:, None], xy, np.nan)
    for a in alphas:
        c = correct_keypoints(xy, t[both, :2], np.ones(int(both.sum()), bool), tgt_bbox, a)
        out[a] = (int(c.sum()), int(both.sum()))
    return out


def run_pair_evaluation(cat, methods, alphas, max_pairs: int | None = None, seed: int = 0,
                        progress=False) -> list[dict]:
    """Pair-wise PCK for one category (cat: :class:`~sopcorr.evaluate.category.EvalCategory`;
    methods: :class:`~sopcorr.matchers.methods.Method` objects): records (method, alpha,
    category, value %, correct, total, per_pair) pooled over the pairs' keypoints; per_pair:
    the list of each pair's PCK (%). Progress (pairs matched, their rate) goes to the log
    (:func:`sopcorr.progress.counting`: ``progress`` True adds a console bar, a Progress
    counts into the caller's)."""
    from ..progress import counting

    pairs = cat.pairs(max_pairs, seed)
    out = []
    if not pairs:
        return out
    with counting(progress, total=len(pairs) * len(methods), desc=f"pairs {cat.category}", unit="pair",
                  logger=log) as bar:
        for m in methods:
            tot = {a: [0, 0] for a in alphas}
            per = {a: [] for a in alphas}
            for s, t in pairs:
                res = pair_counts(m.correspondence(s, t), cat.keypoints(s), cat.keypoints(t), cat.bbox(t), alphas)
                for a, (c, n) in res.items():
                    tot[a][0] += c
                    tot[a][1] += n
                    if n:
                        per[a].append(100.0 * c / n)
                bar.update(1)
            for a in alphas:
                c, n = tot[a]
                out.append(dict(method=m.name, alpha=float(a), category=cat.category,
                                value=100.0 * c / n if n else float("nan"), correct=c, total=n,
                                per_pair=per[a]))
    return out
