"""Kernel Fisher discriminant (KFD) analysis with a polynomial kernel, as a scikit-learn
transformer (paper section 3, Mika et al. 1999).

Formulation. The kernel ``k(x, y) = (x . y + coef0) ** degree`` is made explicit by a kernel
map ``psi(x) = k(x, B) U diag(lam) ** -1/2`` onto the eigenvectors ``U, lam`` of the kernel
matrix of a basis set ``B``:

* ``mode="exact"``: ``B`` = all training points (the dense n x n kernel); ``psi`` spans the
  whole empirical feature space, so linear discriminant analysis on ``psi`` *is* kernel
  Fisher analysis (with the ridge below);
* ``mode="landmark"``: ``B`` = ``n_landmarks`` points drawn from the training set (Nystroem);
  cost O(n m C + n m^2) instead of O(n^2 C + n^3).

On ``psi`` we solve the generalised symmetric eigenproblem ``S_B w = lambda (S_W + r I) w``
with the ridge ``r = regularization * trace(S_W) / dim`` (scale-free), keep the
``n_components`` leading directions and fold everything into one (m, n_components) matrix, so
``transform`` is a kernel evaluation and one matrix product.

Subclasses. A C-class Fisher problem has at most C - 1 non-trivial directions (15 parts ->
14), while the paper embeds into 32 dimensions. With ``subclasses = s > 1`` every class is
split into ``s`` k-means subclasses and the between-class scatter becomes the *between-
subclass scatter of subclasses of different classes* (subclass discriminant analysis, Zhu &
Martinez 2006): ``S_B = sum_{i, j: class(i) != class(j)} p_i p_j (mu_i - mu_j)(mu_i - mu_j)^T``
(rank <= C s - 1: 15 x 3 -> 44 >= 32) while ``S_W`` is the scatter within subclasses. This
keeps the classes apart without pushing subclasses of one part apart. The eigenvalues are in
``eigenvalues_`` (and logged).
"""
from __future__ import annotations

import logging

import numpy as np
from scipy import linalg
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int, coef0: float, dtype=np.float64) -> np.ndarray:
    """(n, C), (m, C) -> (n, m) kernel ``(x . y + coef0) ** degree`` in ``dtype``."""
    k = np.asarray(x, dtype=dtype) @ np.asarray(y, dtype=dtype).T
    k += dtype(coef0)
    return k ** degree


class _ChunkKernel:
    """:func:`polynomial_kernel` of row chunks of X against a fixed basis (m, C), computed in two
    buffers reused from chunk to chunk (no fresh allocation, so no page faults per chunk): the
    chunk converted to ``dtype`` and the (chunk, m) kernel. The same operations as
    :func:`polynomial_kernel` (cast, one matrix product, ``+ coef0``, ``** degree``), so the
    same values. A returned kernel is valid until the next call."""

    def __init__(self, basis: np.ndarray, degree: int, coef0: float, dtype, chunk: int):
        self.bt = np.asarray(basis, dtype=dtype).T
        self.degree, self.coef0, self.dtype = degree, dtype(coef0), dtype
        self.xbuf = np.empty((chunk, self.bt.shape[0]), dtype=dtype)
        self.kbuf = np.empty((chunk, self.bt.shape[1]), dtype=dtype)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        m = len(x)
        xb = self.xbuf[:m]
        np.copyto(xb, x, casting="same_kind")
        k = np.matmul(xb, self.bt, out=self.kbuf[:m])
        k += self.coef0
        if self.degree == 2:  # what ``k ** 2`` computes (numpy's fast path), in place
            np.square(k, out=k)
        else:
            k = k ** self.degree
        return k


def split_subclasses(X: np.ndarray, y: np.ndarray, subclasses: int, random_state=None,
                     max_fit: int = 2000) -> np.ndarray:
    """Split every class of ``y`` (n,) into up to ``subclasses`` k-means subclasses of ``X`` (n, C).

    Returns (n,) int subclass ids, numbered consecutively class by class (classes in sorted
    order), so ``subclass -> class`` is recoverable from any member."""
    rng = check_random_state(random_state)
    out = np.empty(len(y), dtype=np.int64)
    nxt = 0
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        k = int(min(subclasses, len(idx)))
        if k <= 1:
            out[idx] = nxt
            nxt += 1
            continue
        km = KMeans(n_clusters=k, n_init=1, max_iter=30, random_state=rng.randint(2**31 - 1))
        if len(idx) > max_fit:  # fit on a subsample of large classes, assign all members
            km.fit(X[idx[np.sort(rng.choice(len(idx), max_fit, replace=False))]])
            sub = km.predict(X[idx])
        else:
            sub = km.fit_predict(X[idx])
        _, sub = np.unique(sub, return_inverse=True)  # drop empty subclasses
        out[idx] = nxt + sub
        nxt += int(sub.max()) + 1
    return out


def between_subclass_scatter(mu: np.ndarray, p: np.ndarray, sub_class: np.ndarray,
                             mean: np.ndarray | None = None) -> np.ndarray:
    """``sum_{i,j: class(i) != class(j)} p_i p_j (mu_i - mu_j)(mu_i - mu_j)^T`` for subclass
    means mu (S, d), weights p (S,) summing to 1, owning classes sub_class (S,); O(S d^2) via
    ``sum_{all i,j} = 2 sum_i p_i (mu_i - m)(mu_i - m)^T`` minus the same-class pairs."""
    if mean is None:
        mean = (p[:, None] * mu).sum(0)
    Dm = (mu - mean) * np.sqrt(p)[:, None]
    Sb = 2.0 * Dm.T @ Dm
    for cls in np.unique(sub_class):
        sel = sub_class == cls
        if sel.sum() < 2:
            continue
        pc = p[sel]
        Pc = pc.sum()
        mc = (pc[:, None] * mu[sel]).sum(0) / Pc
        Dc = (mu[sel] - mc) * np.sqrt(pc)[:, None]
        Sb -= 2.0 * Pc * (Dc.T @ Dc)
    return 0.5 * (Sb + Sb.T)


def fisher_directions(Z: np.ndarray, classes: np.ndarray, subclasses: np.ndarray,
                      regularization: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear (subclass) discriminant analysis.

    Z: (n, d) mapped data; classes, subclasses: (n,) ids (each subclass inside one class).
    Returns (mean (d,), eigenvalues (d,) descending, directions (d, d) as columns)."""
    n, d = Z.shape
    mean = Z.mean(axis=0)
    sub_ids, sub_inv, sub_n = np.unique(subclasses, return_inverse=True, return_counts=True)
    S = len(sub_ids)
    mu = np.zeros((S, d))
    np.add.at(mu, sub_inv, Z)
    mu /= sub_n[:, None]
    sub_class = np.zeros(S, dtype=np.int64)
    sub_class[sub_inv] = classes
    p = sub_n / n
    # within-subclass scatter
    Zc = Z - mu[sub_inv]
    Sw = Zc.T @ Zc / n
    # between-subclass scatter over pairs of subclasses of different classes:
    # sum_{i,j} p_i p_j D_ij D_ij^T = 2 sum_i p_i (mu_i - m)(mu_i - m)^T; subtract same-class pairs
    Sb = between_subclass_scatter(mu, p, sub_class, mean)
    ridge = regularization * max(np.trace(Sw), 1e-12) / d
    Sw_r = Sw + ridge * np.eye(d)
    with threadpool_limits(1):  # small dense eigenproblems: multi-threading only adds contention
        evals, evecs = linalg.eigh(Sb, Sw_r)
    order = np.argsort(evals)[::-1]
    return mean, evals[order], evecs[:, order]


class KernelFisherDiscriminant(TransformerMixin, BaseEstimator):
    """Kernel Fisher discriminant embedding with a polynomial kernel.

    Parameters
    ----------
    n_components : int, embedding dimension (paper: 32).
    degree, coef0 : polynomial kernel ``(x . y + coef0) ** degree``.
    regularization : ridge on the within-class scatter, relative to its mean eigenvalue.
    subclasses : k-means subclasses per class (subclass discriminant analysis); 1 = plain KFD.
    mode : "exact" (dense kernel of all training points), "landmark" (Nystroem) or "auto"
        (exact when n <= exact_max_samples).
    n_landmarks : number of Nystroem landmarks (landmark mode).
    rank : keep only the ``rank`` leading eigen-directions of the basis kernel matrix (a rank-r
        Nystroem map; bounds the discriminant problem to r x r); None = all non-negligible ones.
    exact_max_samples : the "auto" threshold.
    random_state : seed of the landmark draw and the subclass k-means.

    Fitted attributes: ``basis_`` (m, C) basis points, ``projection_`` (m, k) folded projection,
    ``offset_`` (k,), ``eigenvalues_`` (k,) Fisher ratios of the kept directions,
    ``all_eigenvalues_`` (d,), ``n_components_``, ``mode_``, ``classes_``, ``n_features_in_``.
    ``transform(X)``: (n, C) -> (n, n_components_) float64.
    """

    def __init__(self, n_components=32, degree=2, coef0=1.0, regularization=1e-3, subclasses=1,
                 mode="auto", n_landmarks=1000, exact_max_samples=3000, rank=None, random_state=None):
        self.n_components = n_components
        self.degree = degree
        self.coef0 = coef0
        self.regularization = regularization
        self.subclasses = subclasses
        self.mode = mode
        self.n_landmarks = n_landmarks
        self.exact_max_samples = exact_max_samples
        self.rank = rank
        self.random_state = random_state

    def fit(self, X, y):
        """X: (n, C) features; y: (n,) class labels (at least two classes)."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        if self.mode not in ("auto", "exact", "landmark"):
            raise ValueError(f"mode must be 'auto', 'exact' or 'landmark', got {self.mode!r}")
        if int(self.n_components) < 1:
            raise ValueError(f"n_components must be >= 1, got {self.n_components}")
        self.classes_, yi = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"KernelFisherDiscriminant needs at least 2 classes; got {len(self.classes_)} class")
        rng = check_random_state(self.random_state)
        n = X.shape[0]
        mode = self.mode
        if mode == "auto":
            mode = "exact" if n <= self.exact_max_samples else "landmark"
        self.mode_ = mode
        if mode == "exact" or self.n_landmarks >= n:
            basis = X
        else:
            basis = X[np.sort(rng.choice(n, size=int(self.n_landmarks), replace=False))]
        Kbb = polynomial_kernel(basis, basis, self.degree, self.coef0)
        with threadpool_limits(1):
            lam, U = linalg.eigh(Kbb)
        # landmark mode evaluates kernels in float32 (speed): drop directions float32 cannot resolve
        kdt = np.float64 if mode == "exact" else np.float32
        keep = lam > max(lam.max(), 0) * (1e-10 if kdt == np.float64 else 1e-6)
        lam, U = lam[keep], U[:, keep]
        if self.rank is not None and len(lam) > int(self.rank):
            lam, U = lam[-int(self.rank):], U[:, -int(self.rank):]
        kmap = U / np.sqrt(lam)  # (m, d)
        Z = self.embed_raw(X, basis, kmap, kdt)  # (n, d)
        with threadpool_limits(1):  # many small k-means problems
            sub = (split_subclasses(X, yi, int(self.subclasses), rng) if int(self.subclasses) > 1 else yi)
        mean, evals, evecs = fisher_directions(Z, yi, sub, float(self.regularization))
        k = int(min(self.n_components, Z.shape[1]))
        W = evecs[:, :k]
        self.basis_ = np.asarray(basis, dtype=np.float64)
        self.projection_ = kmap @ W
        self.offset_ = -(mean @ W)
        self.eigenvalues_ = evals[:k]
        self.all_eigenvalues_ = evals
        self.n_components_ = k
        self.n_subclasses_ = int(len(np.unique(sub)))
        rank = self.n_subclasses_ - 1
        log.info("KFD (%s, %d basis points, %d subclasses): leading Fisher eigenvalues %s",
                 mode, len(basis), self.n_subclasses_,
                 np.array2string(self.eigenvalues_[:8], precision=3))
        if k > rank:
            log.warning("KFD: n_components=%d exceeds the %d non-trivial directions of %d "
                        "(sub)classes; raise `subclasses`", k, rank, self.n_subclasses_)
        return self

    def transform(self, X, chunk: int = 65536):
        """X: (n, C) -> (n, n_components_) float64, in chunks of ``chunk`` rows."""
        check_is_fitted(self, "projection_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self.embed(X, chunk=chunk, dtype=np.float64)

    def embed_raw(self, X, basis, kmap, kdt=np.float32, chunk: int = 32768) -> np.ndarray:
        """(n, C) -> (n, d) float64 kernel map ``k(X, basis) @ kmap`` (kernel products in ``kdt``)."""
        out = np.empty((X.shape[0], kmap.shape[1]), dtype=np.float64)
        km = kmap.astype(kdt)
        kernel = _ChunkKernel(basis, self.degree, self.coef0, kdt, min(chunk, max(X.shape[0], 1)))
        for s in range(0, X.shape[0], chunk):
            out[s:s + chunk] = kernel(X[s:s + chunk]) @ km
        return out

    def embed(self, X, chunk: int = 32768, dtype=np.float32) -> np.ndarray:
        """Like :meth:`transform` without input validation or a full-size float64 copy:
        X (n, C) of any float dtype (e.g. float16 features) -> (n, n_components_) ``dtype``,
        computed ``chunk`` rows at a time (peak memory O(chunk x m))."""
        check_is_fitted(self, "projection_")
        out = np.empty((X.shape[0], self.n_components_), dtype=dtype)
        kdt = np.float64 if dtype == np.float64 else np.float32
        P = self.projection_.astype(kdt)
        kernel = _ChunkKernel(self.basis_, self.degree, self.coef0, kdt, min(chunk, max(X.shape[0], 1)))
        for s in range(0, X.shape[0], chunk):
            out[s:s + chunk] = kernel(X[s:s + chunk]) @ P + self.offset_
        return out

    # -- persistence (embedding.npz) -------------------------------------------------------
    def state(self) -> dict:
        """Arrays and parameters that reproduce ``transform`` (for ``np.savez``)."""
        check_is_fitted(self, "projection_")
        return {"basis": self.basis_.astype(np.float32), "projection": self.projection_,
                "offset": self.offset_, "eigenvalues": self.eigenvalues_,
                "all_eigenvalues": self.all_eigenvalues_, "degree": np.int64(self.degree),
                "coef0": np.float64(self.coef0), "mode": np.str_(self.mode_),
                "n_subclasses": np.int64(self.n_subclasses_)}

    @classmethod
    def from_state(cls, state) -> "KernelFisherDiscriminant":
        """Inverse of :meth:`state` (accepts an ``np.load`` result)."""
        kfd = cls(degree=int(state["degree"]), coef0=float(state["coef0"]))
        kfd.basis_ = np.asarray(state["basis"], dtype=np.float64)
        kfd.projection_ = np.asarray(state["projection"])
        kfd.offset_ = np.asarray(state["offset"])
        kfd.eigenvalues_ = np.asarray(state["eigenvalues"])
        kfd.all_eigenvalues_ = np.asarray(state["all_eigenvalues"])
        kfd.n_components_ = kfd.projection_.shape[1]
        kfd.n_components = kfd.n_components_
        kfd.n_features_in_ = kfd.basis_.shape[1]
        kfd.mode_ = str(state["mode"])
        kfd.n_subclasses_ = int(state["n_subclasses"])
        return kfd
