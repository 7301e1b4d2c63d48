"""Agglomerative (Ward) clustering into K parts, scalable to 10^5-10^6 points.

Exact Ward is quadratic in memory and time (20k points: ~71 s here). For large n the points
are first summarised by k-means centroids (fitted on a subsample, every point assigned in
chunks) and Ward's criterion is applied to the centroids *weighted by their sizes* — the Ward
merge cost of two clusters depends only on their sizes and centroids, so this is exact Ward
started from the k-means partition instead of from singletons.
"""
from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from ..errors import SopcorrError


def weighted_ward(centroids: np.ndarray, weights: np.ndarray, n_clusters: int) -> np.ndarray:
    """Ward agglomeration of weighted points down to ``n_clusters`` clusters.

    centroids: (k, d); weights: (k,) positive sizes. Merge cost of clusters a, b:
    ``w_a w_b / (w_a + w_b) * |mu_a - mu_b|^2`` (the increase of the within-cluster sum of
    squares). Returns (k,) int labels in 0..n_clusters-1 (numbered by first appearance)."""
    mu = np.asarray(centroids, dtype=np.float64).copy()
    w = np.asarray(weights, dtype=np.float64).copy()
    k = len(mu)
    if n_clusters >= k:
        return np.arange(k)
    sq = (mu ** 2).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * mu @ mu.T, 0)
    cost = (w[:, None] * w[None, :]) / (w[:, None] + w[None, :]) * d2
    np.fill_diagonal(cost, np.inf)
    alive = np.ones(k, dtype=bool)
    parent = np.arange(k)
    for _ in range(k - n_clusters):
        flat = int(np.argmin(cost))
        a, b = divmod(flat, k)
        if a > b:
            a, b = b, a
        wa, wb = w[a], w[b]
        mu[a] = (wa * mu[a] + wb * mu[b]) / (wa + wb)
        w[a] = wa + wb
        alive[b] = False
        parent[parent == b] = a
        cost[b, :] = np.inf
        cost[:, b] = np.inf
        d2a = ((mu - mu[a]) ** 2).sum(1)
        row = w[a] * w / (w[a] + w) * d2a
        row[~alive] = np.inf
        row[a] = np.inf
        cost[a, :] = row
        cost[:, a] = row
    _, labels = np.unique(parent, return_inverse=True)
    # number by first appearance for a stable order
    order = {}
    out = np.empty(k, dtype=np.int64)
    for i, lab in enumerate(labels):
        out[i] = order.setdefault(lab, len(order))
    return out


def assign_nearest(X: np.ndarray, centroids: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """(n, d) points -> (n,) index of the nearest of (k, d) centroids, ``chunk`` rows at a time."""
    c = np.asarray(centroids, dtype=np.float32)
    cc = (c ** 2).sum(1)
    out = np.empty(len(X), dtype=np.int64)
    for s in range(0, len(X), chunk):
        x2 = np.multiply(X[s:s + chunk], 2, dtype=np.float32)  # 2 * x, as (2 * x) @ c.T
        d = x2 @ c.T
        del x2
        np.subtract(cc[None, :], d, out=d)
        out[s:s + chunk] = np.argmin(d, axis=1)
    return out


def ward_clustering(X: np.ndarray, n_clusters: int, exact_max_samples: int = 3000,
                    precluster: int = 300, fit_samples: int = 20000,
                    sample_weight: np.ndarray | None = None, random_state=None) -> np.ndarray:
    """Cluster the rows of X (n, d) into ``n_clusters`` parts with Ward's criterion.

    n <= exact_max_samples (and no weights): exact Ward (scipy). Otherwise: k-means with
    ``precluster`` centroids fitted on ``fit_samples`` random rows, chunked nearest-centroid
    assignment of all rows, then size-weighted Ward on the centroids. ``sample_weight`` (n,)
    (positive) weights points in the exact weighted path (used by tests and callers that
    already hold centroids). Returns (n,) int64 labels 0..n_clusters-1."""
    n = len(X)
    if n < n_clusters:
        raise SopcorrError(f"clustering: {n} points cannot form {n_clusters} parts")
    rng = np.random.default_rng(random_state)
    if sample_weight is not None:
        return weighted_ward(np.asarray(X, dtype=np.float64), sample_weight, n_clusters)
    if n <= exact_max_samples:
        Z = linkage(np.asarray(X, dtype=np.float64), method="ward")
        lab = fcluster(Z, t=n_clusters, criterion="maxclust") - 1
        _, lab = np.unique(lab, return_inverse=True)
        return lab.astype(np.int64)
    m = min(n, fit_samples)
    sub = np.sort(rng.choice(n, size=m, replace=False)) if m < n else np.arange(n)
    k = max(n_clusters, min(precluster, m))
    km = KMeans(n_clusters=k, n_init=1, max_iter=20, random_state=int(rng.integers(2**31 - 1)))
    with threadpool_limits(1):  # OpenMP k-means on a shared/loaded machine: 1 thread is faster
        km.fit(np.asarray(X[sub], dtype=np.float32))
    assign = assign_nearest(X, km.cluster_centers_)
    sizes = np.bincount(assign, minlength=k).astype(np.float64)
    used = sizes > 0
    cent_lab = np.full(k, -1, dtype=np.int64)
    if used.sum() < n_clusters:
        raise SopcorrError(f"clustering: only {int(used.sum())} distinct pre-clusters for {n_clusters} parts")
    cent_lab[used] = weighted_ward(km.cluster_centers_[used], sizes[used], n_clusters)
    return cent_lab[assign]
