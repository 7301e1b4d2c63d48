"""Semantic-object-part (SOP) models: one Gaussian per part in the embedding (paper eq. 5-6).

``p(c | f) ∝ N(f; mu_c, Sigma_c) p(c)`` with ``p(c)`` the membership fraction (or uniform) and
``Sigma_c = (1 - s) S_c + s * tr(S_c) / d * I`` (shrinkage ``s`` towards a scaled identity,
plus a tiny floor so every part has a positive-definite covariance). Posteriors are computed
in log space; ``temperature`` T > 1 flattens them (``log p / T`` renormalised) — the paper's
setting is T = 1.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.special import logsumexp
from threadpoolctl import threadpool_info, threadpool_limits


def blas_threads() -> int:
    """The number of threads the BLAS libraries are allowed now (at least 1)."""
    n = [int(i.get("num_threads") or 1) for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(n) if n else 1


@dataclass
class PartModels:
    """means (K, d), covariances (K, d, d), log_priors (K,), counts (K,)."""

    means: np.ndarray
    covariances: np.ndarray
    log_priors: np.ndarray
    counts: np.ndarray

    @property
    def n_parts(self) -> int:
        return len(self.means)

    def log_likelihood(self, X: np.ndarray, chunk: int = 65536, workers: int | None = None) -> np.ndarray:
        """(n, d) -> (n, K) float32 log N(x; mu_k, Sigma_k).

        Per chunk of rows and part: one triangular solve (LAPACK trtrs) in place in the centred
        chunk. The parts of a chunk run on ``workers`` threads (default: the BLAS thread count
        in force, e.g. set by threadpoolctl), each solve single-threaded: every (chunk, part)
        is computed alone, so the result does not depend on ``workers`` or on the BLAS threads
        (trtrs solves the columns independently)."""
        K, d = self.means.shape
        out = np.empty((len(X), K), dtype=np.float32)
        chols = [linalg.cholesky(c, lower=True) for c in self.covariances]
        logdets = [2 * np.log(np.diag(L)).sum() for L in chols]
        const = -0.5 * d * np.log(2 * np.pi)
        if not np.isfinite(self.means).all():
            raise ValueError("array must not contain infs or NaNs")
        if workers is None:
            workers = blas_threads()
        workers = max(1, min(int(workers), K))

        def part(x: np.ndarray, s: int, k: int) -> None:
            z = linalg.solve_triangular(chols[k], (x - self.means[k]).T, lower=True,
                                        overwrite_b=True, check_finite=False)
            np.square(z, out=z)
            out[s:s + len(x), k] = const - 0.5 * logdets[k] - 0.5 * z.sum(0)

        with threadpool_limits(1), ThreadPoolExecutor(workers) as pool:
            for s in range(0, len(X), chunk):
                x = np.asarray(X[s:s + chunk], dtype=np.float64)
                if not np.isfinite(x).all():
                    raise ValueError("array must not contain infs or NaNs")
                if workers == 1:
                    for k in range(K):
                        part(x, s, k)
                else:
                    list(pool.map(lambda k: part(x, s, k), range(K)))
        return out

    def log_posterior(self, X: np.ndarray, temperature: float = 1.0, uniform_prior: bool = False,
                      chunk: int = 65536) -> np.ndarray:
        """(n, d) -> (n, K) float32 log p(c | x), normalised in log space (row by row, ``chunk``
        rows at a time)."""
        lp = self.log_likelihood(X)
        if not uniform_prior:
            lp += self.log_priors.astype(np.float32)
        if temperature != 1.0:
            lp /= np.float32(temperature)
        for s in range(0, len(lp), chunk):
            rows = lp[s:s + chunk]
            rows -= logsumexp(rows, axis=1, keepdims=True).astype(np.float32)
        return lp

    def state(self) -> dict:
        return {"means": self.means, "covariances": self.covariances,
                "log_priors": self.log_priors, "counts": self.counts}

    @classmethod
    def from_state(cls, state) -> "PartModels":
        return cls(np.asarray(state["means"]), np.asarray(state["covariances"]),
                   np.asarray(state["log_priors"]), np.asarray(state["counts"]))


def fit_part_models(X: np.ndarray, labels: np.ndarray, n_parts: int, shrinkage: float = 0.1,
                    chunk: int = 65536) -> PartModels:
    """Fit one Gaussian per label. X: (n, d); labels: (n,) in 0..n_parts-1 (a part may be empty:
    it gets the global mean/covariance and a prior of 1/(n+1) of a point, so it is never chosen
    unless nothing else fits). The per-part sums are accumulated ``chunk`` rows at a time (no
    float64 copy of X)."""
    X = np.asarray(X)
    n, d = X.shape
    counts = np.bincount(labels, minlength=n_parts).astype(np.int64)
    sums = np.zeros((n_parts, d))
    for s in range(0, n, chunk):  # in row order, as one np.add.at call would add them
        np.add.at(sums, labels[s:s + chunk], X[s:s + chunk].astype(np.float64))
    gmean = sums.sum(0) / max(n, 1)
    means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], gmean)
    covs = np.empty((n_parts, d, d))
    gcov = None
    for k in range(n_parts):
        sel = labels == k
        if counts[k] >= 2:
            xc = np.subtract(X[sel], means[k], dtype=np.float64)
            S = xc.T @ xc / counts[k]
        else:
            if gcov is None:
                xc = np.subtract(X, gmean, dtype=np.float64)
                gcov = xc.T @ xc / max(n, 1)
            S = gcov
        tr = max(np.trace(S) / d, 1e-12)
        covs[k] = (1 - shrinkage) * S + (shrinkage * tr + 1e-6 * tr) * np.eye(d)
    priors = np.maximum(counts, 1e-3) / max(counts.sum(), 1)
    return PartModels(means, covs, np.log(priors), counts)
