"""Semantic-object-part (SOP) models: one Gaussian per part in the embedding (paper eq. 5-6).

``p(c | f) ∝ N(f; mu_c, Sigma_c) p(c)`` with ``p(c)`` the membership fraction (or uniform) and
``Sigma_c = (1 - s) S_c + s * tr(S_c) / d * I`` (shrinkage ``s`` towards a scaled identity,
plus a tiny floor so every part has a positive-definite covariance). Posteriors are computed
in log space; ``temperature`` T > 1 flattens them (``log p / T`` renormalised) — the paper's
setting is T = 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.special import logsumexp


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

    def log_likelihood(self, X: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """(n, d) -> (n, K) float32 log N(x; mu_k, Sigma_k)."""
        K, d = self.means.shape
        out = np.empty((len(X), K), dtype=np.float32)
        chols = [linalg.cholesky(c, lower=True) for c in self.covariances]
        logdets = [2 * np.log(np.diag(L)).sum() for L in chols]
        const = -0.5 * d * np.log(2 * np.pi)
        for s in range(0, len(X), chunk):
            x = np.asarray(X[s:s + chunk], dtype=np.float64)
            for k in range(K):
                z = linalg.solve_triangular(chols[k], (x - self.means[k]).T, lower=True)
                out[s:s + chunk, k] = const - 0.5 * logdets[k] - 0.5 * (z ** 2).sum(0)
        return out

    def log_posterior(self, X: np.ndarray, temperature: float = 1.0, uniform_prior: bool = False) -> np.ndarray:
        """(n, d) -> (n, K) float32 log p(c | x), normalised in log space."""
        lp = self.log_likelihood(X)
        if not uniform_prior:
            lp += self.log_priors.astype(np.float32)
        if temperature != 1.0:
            lp /= np.float32(temperature)
        lp -= logsumexp(lp, axis=1, keepdims=True).astype(np.float32)
        return lp

    def state(self) -> dict:
        return {"means": self.means, "covariances": self.covariances,
                "log_priors": self.log_priors, "counts": self.counts}

    @classmethod
    def from_state(cls, state) -> "PartModels":
        return cls(np.asarray(state["means"]), np.asarray(state["covariances"]),
                   np.asarray(state["log_priors"]), np.asarray(state["counts"]))


def fit_part_models(X: np.ndarray, labels: np.ndarray, n_parts: int, shrinkage: float = 0.1) -> PartModels:
    """Fit one Gaussian per label. X: (n, d); labels: (n,) in 0..n_parts-1 (a part may be empty:
    it gets the global mean/covariance and a prior of 1/(n+1) of a point, so it is never chosen
    unless nothing else fits)."""
    X = np.asarray(X)
    n, d = X.shape
    counts = np.bincount(labels, minlength=n_parts).astype(np.int64)
    sums = np.zeros((n_parts, d))
    np.add.at(sums, labels, X.astype(np.float64))
    gmean = sums.sum(0) / max(n, 1)
    means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], gmean)
    covs = np.empty((n_parts, d, d))
    gcov = None
    for k in range(n_parts):
        sel = labels == k
        if counts[k] >= 2:
            xc = X[sel].astype(np.float64) - means[k]
            S = xc.T @ xc / counts[k]
        else:
            if gcov is None:
                xc = X.astype(np.float64) - gmean
                gcov = xc.T @ xc / max(n, 1)
            S = gcov
        tr = max(np.trace(S) / d, 1e-12)
        covs[k] = (1 - shrinkage) * S + (shrinkage * tr + 1e-6 * tr) * np.eye(d)
    priors = np.maximum(counts, 1e-3) / max(counts.sum(), 1)
    return PartModels(means, covs, np.log(priors), counts)
