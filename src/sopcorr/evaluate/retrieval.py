"""Retrieval of the K nearest training objects by global descriptor (paper section 6, K = 25).

Distances are L2 distances between L2-normalised global descriptors (for unit vectors this
ranks exactly like cosine similarity). Ties are broken by instance index so the result is
deterministic.
"""
from __future__ import annotations

import numpy as np


def normalise(desc: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, D) rows scaled to unit L2 norm (zero rows stay zero)."""
    desc = np.asarray(desc, dtype=np.float64)
    n = np.linalg.norm(desc, axis=1, keepdims=True)
    return desc / np.where(n > 0, n, 1.0)


def retrieve(global_desc: np.ndarray, queries, candidates, k: int) -> np.ndarray:
    """The ``k`` nearest ``candidates`` of each query.

    global_desc: (N, D) descriptors of all instances; queries: (Q,) and candidates: (T,)
    indices into it. A query never retrieves itself. Returns (Q, k') int indices into
    ``global_desc`` ordered nearest first, k' = min(k, T - 1 if a query is a candidate else T)
    (the same k' for every query: the smallest available).
    """
    queries = np.asarray(queries, dtype=int).reshape(-1)
    candidates = np.asarray(candidates, dtype=int).reshape(-1)
    if k < 1:
        raise ValueError("k must be >= 1")
    d = normalise(global_desc)
    dist = np.linalg.norm(d[queries][:, None, :] - d[candidates][None, :, :], axis=2)  # (Q, T)
    dist[queries[:, None] == candidates[None, :]] = np.inf
    order = np.lexsort((np.broadcast_to(candidates, dist.shape), dist), axis=1)
    n_avail = int(np.min(np.isfinite(dist).sum(axis=1))) if len(queries) else len(candidates)
    kk = min(k, n_avail)
    return candidates[order[:, :kk]]
