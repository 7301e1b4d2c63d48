"""Label bookkeeping and quality measures of the part labelling.

* :func:`match_labels` renames clusters to agree best with a reference labelling (Hungarian
  matching on the confusion matrix), so cluster ids stay stable across iterations and the
  fraction of changed labels is meaningful (cluster ids themselves are arbitrary);
* :func:`label_quality` compares part labels with ground-truth part masks (ARI, NMI over
  object cells) and summarises cluster sizes.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def match_labels(labels: np.ndarray, reference: np.ndarray, n_labels: int) -> np.ndarray:
    """Permute the ids of ``labels`` (n,) in 0..n_labels-1 to maximise agreement with
    ``reference`` (n,) (same range). Returns the renamed (n,) labels."""
    conf = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(conf, (labels, reference), 1)
    rows, cols = linear_sum_assignment(-conf)
    perm = np.arange(n_labels)
    perm[rows] = cols
    return perm[labels]


def changed_fraction(labels: np.ndarray, previous: np.ndarray) -> float:
    """Fraction of entries that differ (labels already matched to ``previous``)."""
    return float(np.mean(labels != previous)) if len(labels) else 0.0


def size_stats(labels: np.ndarray, n_labels: int) -> dict:
    """Cluster-size summary: largest share, smallest share, number of non-empty clusters."""
    counts = np.bincount(labels, minlength=n_labels)
    total = max(counts.sum(), 1)
    return {"largest_share": float(counts.max() / total),
            "smallest_share": float(counts.min() / total),
            "n_nonempty": int((counts > 0).sum())}


def label_quality(labels: np.ndarray, gt: np.ndarray | None) -> dict:
    """ARI and NMI of ``labels`` (n,) against ground-truth part ids ``gt`` (n,) over object
    cells (gt > 0; gt <= 0 = background or unknown). NaN when there is no ground truth."""
    if gt is None:
        return {"ari": float("nan"), "nmi": float("nan")}
    obj = gt > 0
    if obj.sum() < 2:
        return {"ari": float("nan"), "nmi": float("nan")}
    return {"ari": float(adjusted_rand_score(gt[obj], labels[obj])),
            "nmi": float(normalized_mutual_info_score(gt[obj], labels[obj]))}


def gt_parts_on_grid(parts_maps: list, grids: list) -> np.ndarray:
    """Sample ground-truth part maps at feature-cell centres.

    parts_maps: N entries, each an (h, w) int part map (0 = background) or None (unknown);
    grids: N :class:`sopcorr.geometry.FeatureGrid` of the images. Returns (N, H, W) int16 with
    the part id at the pixel nearest to each cell centre, -1 where unknown or outside the image."""
    H, W = grids[0].shape
    out = np.full((len(grids), H, W), -1, dtype=np.int16)
    for i, (pm, grid) in enumerate(zip(parts_maps, grids)):
        if pm is None:
            continue
        xy = grid.cell_centers_image()
        c = np.rint(xy[..., 0]).astype(int)
        r = np.rint(xy[..., 1]).astype(int)
        inside = (c >= 0) & (r >= 0) & (c < pm.shape[1]) & (r < pm.shape[0])
        out[i][inside] = pm[r[inside], c[inside]]
    return out


def plot_convergence(rows: list, path, title: str = "") -> None:
    """Figure-4-style convergence plot of the loop's rows: changed fraction and energy per
    iteration, label quality (ARI/NMI, when known) and the largest part's share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import save_figure

    it = [r["iteration"] for r in rows]
    fig, ax = plt.subplots(1, 3, figsize=(12, 3.4))
    ax[0].plot(it[1:], [r["changed"] for r in rows[1:]], "o-", label="changed labels")
    ax[0].plot(it, [r["graphcut_relabelled"] for r in rows], "s--", label="relabelled by graph cut")
    ax[0].set_xlabel("iteration"); ax[0].set_ylabel("fraction of cells"); ax[0].legend(fontsize=8)
    ax[1].plot(it, [r["energy_per_cell"] for r in rows], "o-")
    ax[1].set_xlabel("iteration"); ax[1].set_ylabel("energy per cell")
    if any(np.isfinite(r["ari"]) for r in rows):
        ax[2].plot(it, [r["ari"] for r in rows], "o-", label="ARI vs GT parts")
        ax[2].plot(it, [r["nmi"] for r in rows], "s-", label="NMI vs GT parts")
    ax[2].plot(it, [r["largest_share"] for r in rows], "^:", label="largest part share")
    ax[2].set_xlabel("iteration"); ax[2].set_ylim(0, 1); ax[2].legend(fontsize=8)
    for a in ax:
        a.set_xticks(it)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
