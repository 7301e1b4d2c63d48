"""Dense correspondence metrics against exact ground truth (synthetic data, issue 5 item 5).

For a pair, the ground truth is a (H, W, 2) field over the *source image pixels* giving the
target image coordinates of the same canonical point (NaN where the point is not on the object
in both images). Pixels are subsampled on a regular grid (``stride``) to stay fast. Metrics per
pair over the sampled pixels visible in both:

* ``epe_px``: mean end-point error in target pixels over points the method maps (valid);
* ``pck@a``: fraction within a * max(target box h, w); points the method leaves undefined count
  as wrong;
* ``coverage``: fraction of points the method maps.

Categories average their pairs' values (each pair weighs the same).
"""
from __future__ import annotations

import logging

import numpy as np

from ..geometry import DenseCorrespondence
from .pck import box_size
from .transfer import transfer_points

log = logging.getLogger(__name__)


def sample_points(gt_field: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Source pixels on a regular grid (every ``stride`` px, offset stride // 2) where the
    ground truth is defined. Returns src_xy (M, 2) and gt_xy (M, 2)."""
    h, w = gt_field.shape[:2]
    off = stride // 2
    ys, xs = np.mgrid[off:h:stride, off:w:stride]
    g = gt_field[ys, xs]                                                    # (h', w', 2)
    ok = np.isfinite(g).all(axis=-1)
    src = np.stack([xs[ok], ys[ok]], axis=1).astype(np.float64)
    return src, g[ok].astype(np.float64)


def dense_metrics(pred_xy: np.ndarray, ok: np.ndarray, gt_xy: np.ndarray, norm: float,
                  alphas) -> dict[str, float]:
    """Metrics (see module doc) of predictions (M, 2) with validity (M,) against (M, 2)."""
    out: dict[str, float] = {}
    m = len(gt_xy)
    if m == 0:
        out["epe_px"] = float("nan")
        out.update({f"pck@{a:g}": float("nan") for a in alphas})
        out["coverage"] = float("nan")
        return out
    d = np.linalg.norm(np.asarray(pred_xy, np.float64) - gt_xy, axis=1)
    ok = np.asarray(ok, bool) & np.isfinite(d)
    out["epe_px"] = float(d[ok].mean()) if ok.any() else float("nan")
    for a in alphas:
        out[f"pck@{a:g}"] = float((ok & (np.where(ok, d, np.inf) <= a * norm)).sum() / m)
    out["coverage"] = float(ok.mean())
    return out


def evaluate_dense_pair(corr: DenseCorrespondence, gt_field: np.ndarray, target_bbox,
                        alphas=(0.05, 0.1), stride: int = 4) -> dict[str, float]:
    """Metrics of one method's correspondence source -> target for one pair; also ``n_points``."""
    src, gt = sample_points(gt_field, stride)
    xy, _, ok = transfer_points(corr, src)
    res = dense_metrics(xy, ok, gt, box_size(target_bbox), alphas)
    res["n_points"] = float(len(src))
    return res


def ground_truth_field(cat, src: int, tgt: int, stride: int = 1) -> np.ndarray:
    """(H, W, 2) dense ground truth source -> target from the instances' canonical maps and
    part masks (``sopcorr.data.groundtruth``), computed only at the pixels
    :func:`sample_points` samples with ``stride`` (NaN elsewhere); DatasetError without ground
    truth. cat: an :class:`~sopcorr.evaluate.category.EvalCategory`."""
    from ..errors import DatasetError

    a, b = cat.instances[src], cat.instances[tgt]
    if not (a.canonical and a.parts and b.canonical and b.parts):
        raise DatasetError(f"no canonical/parts ground truth for {a.id} -> {b.id}")
    from ..data import groundtruth as gt

    ds = cat.dataset
    canon_s, parts_s = gt.read_canonical(ds.path(a.canonical)), gt.read_parts(ds.path(a.parts))
    off = stride // 2
    sub = gt.dense_correspondence(canon_s[off::stride, off::stride], parts_s[off::stride, off::stride],
                                  gt.read_canonical(ds.path(b.canonical)), gt.read_parts(ds.path(b.parts)))
    out = np.full(parts_s.shape + (2,), np.nan, np.float32)
    out[off::stride, off::stride] = sub
    return out


def has_dense_ground_truth(cat) -> bool:
    """Whether every instance has canonical and part maps."""
    return all(inst.canonical and inst.parts for inst in cat.instances)


def run_dense_evaluation(cat, methods, alphas=(0.05, 0.1), stride: int = 4,
                         max_pairs: int | None = None, seed: int = 0, progress=False) -> list[dict]:
    """Dense metrics for one category over its evaluation pairs: records (method, metric,
    category, value, n_pairs) with metric in 'epe_px', 'pck@<a>' (in %), 'coverage' (in %).
    Progress (pairs matched) goes to the log (:func:`sopcorr.progress.counting`)."""
    from ..progress import counting

    pairs = cat.pairs(max_pairs, seed)
    fields = {}
    for s, t in pairs:
        fields[(s, t)] = ground_truth_field(cat, s, t, stride)
    out = []
    with counting(progress, total=len(pairs) * len(methods), desc=f"dense {cat.category}", unit="pair",
                  logger=log) as bar:
        for m in methods:
            per = []
            for s, t in pairs:
                per.append(evaluate_dense_pair(m.correspondence(s, t), fields[(s, t)], cat.bbox(t), alphas, stride))
                bar.update(1)
            _dense_records(m.name, cat.category, per, alphas, out)
    return out


def _dense_records(name: str, category: str, per: list[dict], alphas, out: list) -> None:
    """Append the records of one method's per-pair results ``per`` to ``out``."""
    for k in ["epe_px", *[f"pck@{a:g}" for a in alphas], "coverage"]:
        vals = np.array([p[k] for p in per if p["n_points"] > 0], dtype=float)
        vals = vals[np.isfinite(vals)]
        v = float(vals.mean()) if len(vals) else float("nan")
        out.append(dict(method=name, metric=k, category=category,
                        value=v if k == "epe_px" else 100.0 * v, n_pairs=len(vals)))
