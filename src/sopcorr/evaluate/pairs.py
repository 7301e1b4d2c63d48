"""Pair-wise PCK (the PF-WILLOW / PF-PASCAL / SPair protocol, issue 6 item 5).

For an ordered pair (source, target) of the dataset's ``pairs``, the source's keypoints that are
visible in both images are mapped through the method's correspondence source -> target; a
keypoint is correct within alpha * max(target box h, w). A point the method leaves undefined
counts as wrong. A category's PCK pools the keypoints of all its pairs (correct / total).
"""
from __future__ import annotations

import numpy as np

from ..geometry import DenseCorrespondence
from .pck import correct_keypoints
from .transfer import transfer_points


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


def eval_pairs(ctx, max_pairs: int | None = None, seed: int = 0) -> list[tuple[int, int]]:
    """The category's evaluation pairs as (src, tgt) instance indices: the dataset's ``pairs``
    (all, or ``max_pairs`` of them drawn with ``seed``, in their original order)."""
    idx = {inst.id: i for i, inst in enumerate(ctx.instances)}
    pairs = [(idx[a], idx[b]) for a, b in ctx.get_dataset().pairs if a in idx and b in idx]
    if max_pairs is not None and len(pairs) > max_pairs:
        keep = np.sort(np.random.default_rng(seed).choice(len(pairs), size=max_pairs, replace=False))
        pairs = [pairs[j] for j in keep]
    return pairs


def run_pair_evaluation(ctx, methods, alphas, max_pairs: int | None = None, seed: int = 0,
                        progress=None) -> list[dict]:
    """Pair-wise PCK for one category: records (method, alpha, category, value %, correct,
    total) pooled over the pairs' keypoints."""
    pairs = eval_pairs(ctx, max_pairs, seed)
    out = []
    if not pairs:
        return out
    for m in methods:
        tot = {a: [0, 0] for a in alphas}
        for s, t in pairs:
            res = pair_counts(m.correspondence(s, t), ctx.keypoints(s), ctx.keypoints(t), ctx.bbox(t), alphas)
            for a, (c, n) in res.items():
                tot[a][0] += c
                tot[a][1] += n
            if progress is not None:
                progress()
        for a in alphas:
            c, n = tot[a]
            out.append(dict(method=m.name, alpha=float(a), category=ctx.category,
                            value=100.0 * c / n if n else float("nan"), correct=c, total=n))
    return out
