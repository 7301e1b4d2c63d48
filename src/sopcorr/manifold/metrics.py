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
