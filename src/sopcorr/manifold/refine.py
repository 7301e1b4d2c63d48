"""The manifold learning and label refinement loop (paper Algorithm 1).

Iteration 0 (initialisation): Ward clustering of the raw features (identity embedding) into K
parts -> Gaussian part models -> graph cut. Iterations t >= 1: KFD fitted on the current labels
-> embed every cell -> Ward clustering of the embedded cells -> Gaussian part models ->
graph-cut refinement of the clustering labels on each image's 8-connected grid (with
``recluster_until`` = r, iterations t > r skip the clustering: the part models are refitted to the
previous iteration's labels in the new embedding, hard EM on a fixed set of parts). Stops when the
fraction of changed labels (after matching cluster ids to the previous iteration) is below
``tol`` or after ``max_iter`` KFD iterations.

The core API takes arrays — ``features`` (N, H, W, C) (a numpy array, a zarr array, anything
indexable per image) and ``valid`` (N, H, W) — so it is testable without files;
``state_dir`` makes it resumable (one atomic checkpoint per finished iteration).

Variants: :class:`ManifoldParams` holds every knob. ``ManifoldParams.from_config`` builds the
faithful ``paper`` variant (knobs of the follow-up study at their neutral values) or the
``improved`` one (the values of ``manifold.improved``); the loop has one code path.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SopcorrError
from ..io import atomic_path
from ..progress import Progress
from . import graphcut
from .hac import assign_nearest, ward_clustering
from .kfd import KernelFisherDiscriminant
from .metrics import changed_fraction, label_quality, match_labels, size_stats
from .sop_model import PartModels, fit_part_models

log = logging.getLogger(__name__)

#: unary cost of a part that has no members (never chosen unless forced)
EMPTY_PART_COST = 1e4


@dataclass
class ManifoldParams:
    """Every parameter of the loop (see docs/MANIFOLD.md for meaning and defaults)."""

    n_parts: int = 15
    n_components: int = 32
    subclasses: int = 3
    kernel_degree: int = 2
    kernel_coef0: float = 1.0
    regularization: float = 1e-3
    landmarks: int = 500
    kernel_rank: int | None = 256
    exact_max_samples: int = 3000
    fit_samples: int = 20000
    precluster: int = 300
    max_iter: int = 5
    tol: float = 0.01
    covariance_shrinkage: float = 0.1
    init_dims: int = 32
    pairwise: str = "paper"            # paper | metric | contact
    pairwise_weight: float = 1.0
    sigma2: float | None = None        # None: median inter-part distance
    solver: str = "swap"               # swap | expansion
    max_sweeps: int = 3
    # knobs of the follow-up study (neutral values = the paper)
    posterior_temperature: float = 1.0
    uniform_prior: bool = False
    min_part_fraction: float = 0.0
    anchor_weight: float = 0.0
    raw_weight: float = 0.0
    recluster_until: int | None = None  # None: re-cluster every iteration (the paper)
    seed: int = 0

    @classmethod
    def from_config(cls, manifold_cfg: dict, seed: int = 0, category: str | None = None) -> "ManifoldParams":
        """Build from the validated ``manifold`` config section. The per-category seed is
        ``seed + crc32(category)`` (categories stay independent)."""
        cfg = dict(manifold_cfg)
        variant = cfg.pop("variant", "paper")
        improved = cfg.pop("improved", {}) or {}
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in cfg.items() if k in names}
        if variant == "improved":
            kw.update({k: v for k, v in improved.items() if k in names and v is not None})
        cat_seed = (int(seed) + (zlib.crc32(category.encode()) if category else 0)) % (2**32)
        kw["seed"] = cat_seed
        return cls(**kw)

    def fingerprint(self) -> str:
        """Hash of the parameters that change an iteration's result (not max_iter / tol, so a
        finished run can be continued with a larger max_iter)."""
        d = dataclasses.asdict(self)
        d.pop("max_iter"), d.pop("tol")
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Embedding:
    """The descriptor the loop clusters: ``[kfd(x), raw_weight * pca(x)]`` (either part may be
    absent). ``pca_mean`` (C,), ``pca_components`` (C, p)."""

    kfd: KernelFisherDiscriminant | None
    pca_mean: np.ndarray | None = None
    pca_components: np.ndarray | None = None
    raw_weight: float = 0.0

    @property
    def dim(self) -> int:
        d = self.kfd.n_components_ if self.kfd is not None else 0
        if self.raw_weight > 0 and self.pca_components is not None:
            d += self.pca_components.shape[1]
        return d

    def embed(self, X: np.ndarray, chunk: int = 32768) -> np.ndarray:
        """(n, C) -> (n, dim) float32."""
        parts = []
        if self.kfd is not None:
            parts.append(self.kfd.embed(X, chunk=chunk))
        if self.raw_weight > 0 and self.pca_components is not None:
            parts.append(self.raw_weight * pca_project(X, self.pca_mean, self.pca_components, chunk))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def state(self) -> dict:
        st = {f"kfd_{k}": v for k, v in (self.kfd.state().items() if self.kfd is not None else [])}
        st["raw_weight"] = np.float64(self.raw_weight)
        if self.pca_components is not None:
            st["pca_mean"], st["pca_components"] = self.pca_mean, self.pca_components
        return st

    @classmethod
    def from_state(cls, st) -> "Embedding":
        keys = list(st.keys())
        kfd = (KernelFisherDiscriminant.from_state({k[4:]: st[k] for k in keys if k.startswith("kfd_")})
               if "kfd_basis" in keys else None)
        return cls(kfd, st["pca_mean"] if "pca_mean" in keys else None,
                   st["pca_components"] if "pca_components" in keys else None, float(st["raw_weight"]))


def fit_pca(X: np.ndarray, dims: int, rng: np.random.Generator, max_samples: int = 20000):
    """PCA of (n, C) rows on a random subsample -> mean (C,), components (C, dims)."""
    n = len(X)
    sub = np.sort(rng.choice(n, size=min(n, max_samples), replace=False))
    S = np.array(X[sub], dtype=np.float64)  # a fresh float64 copy, centred in place
    mean = S.mean(0)
    S -= mean
    _, _, vt = np.linalg.svd(S, full_matrices=False)
    return mean, vt[:dims].T.copy()


def pca_project(X: np.ndarray, mean: np.ndarray, comps: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """(n, C) rows of any float dtype -> (n, p) float32 ``(x - mean) @ comps``, ``chunk`` rows at
    a time (one float64 chunk in memory)."""
    out = np.empty((len(X), comps.shape[1]), dtype=np.float32)
    for s in range(0, len(X), chunk):
        x = np.subtract(X[s:s + chunk], mean, dtype=np.float64)
        out[s:s + chunk] = x @ comps
    return out


def part_medians(graph: graphcut.GridGraph, labels: np.ndarray, n_parts: int) -> np.ndarray:
    """(K, 2) median (row, col) grid location of each part over all label maps (NaN if empty)."""
    _, rows, cols = np.nonzero(graph.index >= 0)
    med = np.full((n_parts, 2), np.nan)
    for k in range(n_parts):
        sel = labels == k
        if sel.any():
            med[k] = np.median(rows[sel]), np.median(cols[sel])
    return med


def contact_matrix(graph: graphcut.GridGraph, labels: np.ndarray, n_parts: int) -> np.ndarray:
    """(K, K) symmetric count of 8-neighbour contacts between parts (diagonal: same-part)."""
    a, b = labels[graph.edges[:, 0]], labels[graph.edges[:, 1]]
    A = np.zeros((n_parts, n_parts))
    np.add.at(A, (a, b), 1)
    return A + A.T - np.diag(np.diag(A))


def pairwise_matrix(kind: str, weight: float, medians: np.ndarray, sigma2: float | None,
                    contacts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """The (K, K) pairwise cost V for c_i != c_j (zero diagonal).

    paper:   w exp(-d / sigma2), d = distance between part medians (a semimetric);
    metric:  w (1 - exp(-d / sigma2)) (a metric, for alpha-expansion);
    contact: w (0.1 + 0.9 (1 - s_ab / max s)), s_ab = contact rate of parts a, b (borders
             between parts that rarely touch cost most).
    Returns (V, D, sigma2) with D the (K, K) median distances (empty parts: the max distance)."""
    K = len(medians)
    diff = medians[:, None, :] - medians[None, :, :]
    D = np.sqrt((diff ** 2).sum(-1))
    finite = np.isfinite(D)
    dmax = D[finite].max() if finite.any() else 1.0
    D = np.where(finite, D, dmax)
    off = ~np.eye(K, dtype=bool)
    if sigma2 is None:
        sigma2 = float(np.median(D[off])) if off.any() else 1.0
        sigma2 = max(sigma2, 1e-6)
    if kind == "paper":
        V = weight * np.exp(-D / sigma2)
    elif kind == "metric":
        V = weight * (1 - np.exp(-D / sigma2))
    elif kind == "contact":
        if contacts is None:
            raise ValueError("contact pairwise term needs the contact matrix")
        border = contacts.sum(1) - np.diag(contacts)
        rate = contacts / np.sqrt(np.maximum(border[:, None] * border[None, :], 1))
        rate[~off] = 0
        smax = rate.max() if rate.max() > 0 else 1.0
        V = weight * (0.1 + 0.9 * (1 - rate / smax))
    else:
        raise ValueError(f"unknown pairwise term {kind!r} (paper, metric, contact)")
    V[~off] = 0
    return 0.5 * (V + V.T), D, float(sigma2)


def dissolve_small_parts(X: np.ndarray, labels: np.ndarray, n_parts: int, min_fraction: float) -> np.ndarray:
    """Reassign the members of parts holding < min_fraction of the cells to the nearest centroid
    of the remaining parts (ids kept; dissolved parts become empty)."""
    counts = np.bincount(labels, minlength=n_parts)
    small = counts < min_fraction * len(labels)
    if not small.any() or small.all():
        return labels
    keep = np.flatnonzero(~small)
    cent = np.stack([np.asarray(X[labels == k], dtype=np.float64).mean(0) for k in keep])
    out = labels.copy()
    sel = small[labels]
    out[sel] = keep[assign_nearest(X[sel], cent)]
    return out


@dataclass
class IterationState:
    """What one finished iteration leaves behind (also the checkpoint content)."""

    iteration: int
    labels: np.ndarray                 # (n,) refined labels, node order
    rows: list                          # convergence rows so far
    embedding: Embedding | None         # None at iteration 0
    models: PartModels
    pairwise: np.ndarray                # (K, K)
    medians: np.ndarray                 # (K, 2)
    first_embedding: Embedding | None = None   # the embedding of iteration 1 (for the ablation)


@dataclass
class ManifoldResult:
    """labels: (N, H, W) int16, -1 at invalid cells; rows: convergence rows (dicts);
    embedding: the last KFD embedding; first_embedding: iteration 1's; models, pairwise (K, K),
    medians (K, 2); converged: whether tol was reached."""

    labels: np.ndarray
    rows: list
    embedding: Embedding
    first_embedding: Embedding
    models: PartModels
    pairwise: np.ndarray
    medians: np.ndarray
    converged: bool
    sigma2: float = float("nan")


def gather_valid(features, valid: np.ndarray) -> np.ndarray:
    """(N, H, W, C) features (numpy or zarr, read one image at a time), (N, H, W) valid ->
    (n, C) float16/float32 rows of the valid cells in C order (the graph's node order).

    A numpy array of that dtype whose cells are all valid is not copied: the rows are a
    read-only (n, C) view of it (the same values; no second copy of a large feature array)."""
    valid = np.asarray(valid, dtype=bool)
    N = valid.shape[0]
    C = int(features.shape[-1])
    if isinstance(features, np.ndarray) and features.dtype in (np.float16, np.float32) and valid.all():
        X = features.reshape(-1, C).view()  # a view when features is contiguous
        X.flags.writeable = False
        return X
    first = np.asarray(features[0])
    dtype = np.float16 if first.dtype == np.float16 else np.float32
    X = np.empty((int(valid.sum()), C), dtype=dtype)
    off = 0
    for i in range(N):
        f = first if i == 0 else np.asarray(features[i])
        k = int(valid[i].sum())
        X[off:off + k] = f[valid[i]]
        off += k
    return X


class _Checkpoints:
    """Atomic per-iteration checkpoints ``iter_###.npz`` under ``state_dir``."""

    def __init__(self, state_dir, fingerprint: str):
        self.dir = Path(state_dir) if state_dir else None
        self.fp = fingerprint

    def save(self, st: IterationState) -> None:
        if self.dir is None:
            return
        arrays = {"labels": st.labels.astype(np.int16), "pairwise": st.pairwise, "medians": st.medians,
                  "meta": np.str_(json.dumps({"fingerprint": self.fp, "iteration": st.iteration,
                                               "rows": st.rows}))}
        arrays.update({f"models_{k}": v for k, v in st.models.state().items()})
        if st.embedding is not None:
            arrays.update({f"emb_{k}": v for k, v in st.embedding.state().items()})
        if st.first_embedding is not None:
            arrays.update({f"first_{k}": v for k, v in st.first_embedding.state().items()})
        with atomic_path(self.dir / f"iter_{st.iteration:03d}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

    def latest(self) -> IterationState | None:
        if self.dir is None or not self.dir.is_dir():
            return None
        for path in sorted(self.dir.glob("iter_*.npz"), reverse=True):
            try:
                with np.load(path, allow_pickle=False) as z:
                    meta = json.loads(str(z["meta"]))
                    if meta.get("fingerprint") != self.fp:
                        log.info("ignoring checkpoint %s (other parameters or data)", path.name)
                        return None
                    def sub(prefix):
                        return {k[len(prefix):]: z[k] for k in z.files if k.startswith(prefix)}
                    emb = sub("emb_")
                    first = sub("first_")
                    return IterationState(
                        iteration=int(meta["iteration"]), labels=z["labels"].astype(np.int64),
                        rows=meta["rows"], embedding=Embedding.from_state(emb) if emb else None,
                        models=PartModels.from_state(sub("models_")), pairwise=z["pairwise"],
                        medians=z["medians"], first_embedding=Embedding.from_state(first) if first else None)
            except Exception as exc:  # a torn or foreign file: ignore it
                log.warning("ignoring unreadable checkpoint %s (%s)", path.name, exc)
        return None


def _iteration_seed(seed: int, iteration: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(iteration)]).generate_state(1)[0])


@dataclass
class LoopInputs:
    """What every iteration of one category shares (built once by :func:`prepare_inputs`).

    graph: the 8-connected grid of the valid cells (n nodes); X: (n, C) features of the valid
    cells in node order; gt: (n,) ground-truth part ids or None; pca_mean (C,), pca_components
    (C, p): PCA of the raw features (iteration 0 models parts in it; ``raw_weight`` appends it);
    checkpoints: the per-iteration checkpoints (keyed by the parameters and the data);
    load_seconds: time spent reading the features."""

    graph: graphcut.GridGraph
    X: np.ndarray
    gt: np.ndarray | None
    pca_mean: np.ndarray
    pca_components: np.ndarray
    checkpoints: _Checkpoints
    load_seconds: float

    @property
    def n(self) -> int:
        return self.graph.n_nodes


def prepare_inputs(features, valid: np.ndarray, p: ManifoldParams, gt_parts: np.ndarray | None = None,
                   state_dir: str | Path | None = None) -> LoopInputs:
    """Check the shapes, build the grid graph, gather the valid cells' features, fingerprint the
    run (parameters + data) for the checkpoints and fit the PCA of the raw features."""
    valid = np.asarray(valid, dtype=bool)
    if valid.ndim != 3 or tuple(features.shape[:3]) != valid.shape:
        raise SopcorrError(f"manifold: features {tuple(features.shape)} and valid {valid.shape} do not match")
    if p.max_iter < 1:
        raise SopcorrError("manifold.max_iter: at least one KFD iteration is needed")
    graph = graphcut.GridGraph.from_valid(valid)
    n = graph.n_nodes
    if n < max(p.n_parts, 2):
        raise SopcorrError(f"manifold: {n} valid feature cells cannot form {p.n_parts} parts")
    t0 = time.perf_counter()
    X = gather_valid(features, valid)
    load_s = time.perf_counter() - t0
    gt = None if gt_parts is None else np.asarray(gt_parts)[valid].astype(np.int64)
    h = hashlib.sha1(p.fingerprint().encode())
    h.update(np.packbits(valid).tobytes())
    h.update(np.ascontiguousarray(X[:: max(1, n // 997)]).tobytes())
    rng0 = np.random.default_rng(_iteration_seed(p.seed, 10**6))
    pca_mean, pca_comp = fit_pca(X, min(p.init_dims, X.shape[1]), rng0, p.fit_samples)
    return LoopInputs(graph, X, gt, pca_mean, pca_comp, _Checkpoints(state_dir, h.hexdigest()[:16]), load_s)


def stop_reason(state: IterationState | None, p: ManifoldParams) -> str | None:
    """'converged' (fewer than ``tol`` labels changed after a KFD iteration), 'max_iter', or None
    (run another iteration)."""
    if state is None:
        return None
    if state.iteration >= 1 and state.rows[-1]["changed"] < p.tol:
        return "converged"
    if state.iteration >= p.max_iter:
        return "max_iter"
    return None


def embed_step(inp: LoopInputs, p: ManifoldParams, state: IterationState | None, it: int,
               rng: np.random.Generator, times: dict) -> tuple[Embedding | None, np.ndarray, np.ndarray]:
    """Step 1 (embedding). Iteration 0: the identity (cluster the raw features, model parts in
    their PCA); later: KFD fitted on a subsample of the previous labels. Returns (embedding or
    None, Xc (n, d) the descriptor clustered, Xm (n, d') the descriptor the part models use)."""
    t = time.perf_counter()
    if it == 0:
        times["kfd"] = 0.0
        Xm = pca_project(inp.X, inp.pca_mean, inp.pca_components)
        times["embed"] = time.perf_counter() - t
        return None, inp.X, Xm
    sub = np.sort(rng.choice(inp.n, size=min(inp.n, p.fit_samples), replace=False))
    kfd = KernelFisherDiscriminant(
        n_components=p.n_components, degree=p.kernel_degree, coef0=p.kernel_coef0,
        regularization=p.regularization, subclasses=p.subclasses, mode="auto",
        n_landmarks=p.landmarks, exact_max_samples=p.exact_max_samples, rank=p.kernel_rank,
        random_state=int(rng.integers(2**31 - 1)))
    kfd.fit(np.asarray(inp.X[sub], dtype=np.float32), state.labels[sub])
    emb = Embedding(kfd, inp.pca_mean, inp.pca_components, p.raw_weight)
    times["kfd"] = time.perf_counter() - t
    t = time.perf_counter()
    Xe = emb.embed(inp.X)
    times["embed"] = time.perf_counter() - t
    return emb, Xe, Xe


def cluster_step(Xc: np.ndarray, Xm: np.ndarray, p: ManifoldParams, state: IterationState | None,
                 hard_em: bool, rng: np.random.Generator, times: dict) -> np.ndarray:
    """Step 1c (clustering): Ward into K parts (small parts dissolved, ids matched to the
    previous labels); in the hard-EM phase the previous labels are kept. Returns (n,) labels."""
    t = time.perf_counter()
    cluster_seed = int(rng.integers(2**31 - 1))  # drawn in every iteration (same stream either way)
    if hard_em:
        # hard EM on a fixed set of parts: the part models are refitted to the current labels
        # in the new embedding, and the graph cut alone moves labels
        lab = state.labels.copy()
    else:
        K = p.n_parts
        lab = ward_clustering(Xc, K, exact_max_samples=p.exact_max_samples, precluster=p.precluster,
                              fit_samples=p.fit_samples, random_state=cluster_seed)
        if p.min_part_fraction > 0:
            lab = dissolve_small_parts(Xm, lab, K, p.min_part_fraction)
        if state is not None:
            lab = match_labels(lab, state.labels, K)
    times["cluster"] = time.perf_counter() - t
    return lab


def unary_step(Xm: np.ndarray, lab: np.ndarray, p: ManifoldParams, state: IterationState | None,
               times: dict) -> tuple[PartModels, np.ndarray, float]:
    """Step 1d (part models): Gaussian part models of the labels and the graph cut's unary costs
    (n, K) = -log posterior (empty parts: EMPTY_PART_COST; ``anchor_weight`` charges leaving the
    previous label). Returns (models, unary, mean top posterior)."""
    t = time.perf_counter()
    models = fit_part_models(Xm, lab, p.n_parts, p.covariance_shrinkage)
    logpost = models.log_posterior(Xm, p.posterior_temperature, p.uniform_prior)
    top_post = float(np.exp(logpost.max(1)).mean())
    unary = logpost.astype(np.float64)
    del logpost
    np.negative(unary, out=unary)
    unary[:, models.counts == 0] = EMPTY_PART_COST
    if p.anchor_weight > 0 and state is not None:
        unary += p.anchor_weight
        unary[np.arange(len(lab)), state.labels] -= p.anchor_weight
    times["models"] = time.perf_counter() - t
    return models, unary, top_post


@dataclass
class GraphCutOutcome:
    """labels (n,) after the cut; pairwise (K, K); medians (K, 2); sigma2; energies before/after."""

    labels: np.ndarray
    pairwise: np.ndarray
    medians: np.ndarray
    sigma2: float
    energy_before: float
    energy_after: float


def graphcut_step(graph: graphcut.GridGraph, unary: np.ndarray, lab: np.ndarray, p: ManifoldParams,
                  times: dict) -> GraphCutOutcome:
    """Step 2 (graph cut): the pairwise term from the part layout of ``lab``, then move-making
    from ``lab`` on the 8-connected grid."""
    t = time.perf_counter()
    K = p.n_parts
    med = part_medians(graph, lab, K)
    V, _, sigma2 = pairwise_matrix(p.pairwise, p.pairwise_weight, med, p.sigma2,
                                   contact_matrix(graph, lab, K) if p.pairwise == "contact" else None)
    e_before = graphcut.energy(graph, unary, V, lab)
    new = graphcut.solve(graph, unary, V, lab, p.solver, p.max_sweeps)
    e_after = graphcut.energy(graph, unary, V, new)
    times["graphcut"] = time.perf_counter() - t
    return GraphCutOutcome(new, V, med, sigma2, e_before, e_after)


def convergence_row(it: int, inp: LoopInputs, p: ManifoldParams, state: IterationState | None,
                    lab: np.ndarray, cut: GraphCutOutcome, top_post: float, times: dict,
                    cpu_seconds: float) -> dict:
    """One row of convergence.csv: change, energies, part sizes, label quality, timings."""
    n = inp.n
    q_cluster = label_quality(lab, inp.gt)
    q_final = label_quality(cut.labels, inp.gt)
    return {
        "iteration": it,
        "changed": changed_fraction(cut.labels, state.labels) if state is not None else 1.0,
        "energy": cut.energy_after,
        "energy_per_cell": cut.energy_after / n,
        "energy_before_graphcut": cut.energy_before,
        "graphcut_relabelled": changed_fraction(cut.labels, lab),
        "mean_top_posterior": top_post,
        **size_stats(cut.labels, p.n_parts),
        "ari_cluster": q_cluster["ari"], "nmi_cluster": q_cluster["nmi"],
        "ari": q_final["ari"], "nmi": q_final["nmi"],
        "sigma2": cut.sigma2,
        **{f"seconds_{k}": v for k, v in times.items()},
        "seconds_total": sum(times.values()) + (inp.load_seconds if it == 0 else 0.0),
        "cpu_seconds": cpu_seconds,
        "n_cells": n,
    }


def run_iteration(inp: LoopInputs, p: ManifoldParams, state: IterationState | None) -> IterationState:
    """One iteration of Algorithm 1 after ``state`` (None: iteration 0): embed, cluster, part
    models, graph cut, convergence row. Its random draws depend only on (seed, iteration)."""
    it = 0 if state is None else state.iteration + 1
    hard_em = p.recluster_until is not None and it > p.recluster_until
    # in the hard-EM phase every iteration draws the same subsample / landmarks / subclass
    # seeds, so the labels alone drive the change (no sampling noise between iterations)
    rng = np.random.default_rng(_iteration_seed(p.seed, p.recluster_until + 1 if hard_em else it))
    cpu0 = time.process_time()
    times: dict = {}
    emb, Xc, Xm = embed_step(inp, p, state, it, rng, times)
    lab = cluster_step(Xc, Xm, p, state, hard_em, rng, times)
    models, unary, top_post = unary_step(Xm, lab, p, state, times)
    del Xc, Xm  # the embedded cells are not needed by the graph cut (its peak memory)
    cut = graphcut_step(inp.graph, unary, lab, p, times)
    del unary
    row = convergence_row(it, inp, p, state, lab, cut, top_post, times, time.process_time() - cpu0)
    log.info("iteration %d: changed %.4f, energy/cell %.4f, graph cut relabelled %.4f, largest part %.3f, "
             "ARI %.3f, %.1f s", it, row["changed"], row["energy_per_cell"], row["graphcut_relabelled"],
             row["largest_share"], row["ari"], row["seconds_total"])
    rows = (state.rows if state is not None else []) + [row]
    first = emb if it == 1 else (state.first_embedding if state is not None else None)
    last = emb if emb is not None else (state.embedding if state is not None else None)
    return IterationState(it, cut.labels, rows, last, models, cut.pairwise, cut.medians, first)


def run_manifold(features, valid: np.ndarray, params: ManifoldParams, gt_parts: np.ndarray | None = None,
                 state_dir: str | Path | None = None, max_iterations_this_call: int | None = None,
                 desc: str = "manifold") -> ManifoldResult:
    """Run Algorithm 1 on one category.

    features: (N, H, W, C) per-image indexable array (numpy, zarr), any float dtype;
    valid: (N, H, W) bool (cells inside the image);
    gt_parts: optional (N, H, W) int ground-truth part ids per cell (0 background, < 0 unknown)
        for the ARI/NMI columns of the convergence rows;
    state_dir: folder for per-iteration checkpoints (resume from the last finished one);
    max_iterations_this_call: stop early after this many new iterations (for tests of resuming);
    desc: the name of the progress lines (iterations done, seconds per iteration) in the log.
    Returns a :class:`ManifoldResult`.
    """
    inp = prepare_inputs(features, valid, params, gt_parts, state_dir)
    state = inp.checkpoints.latest()
    if state is not None:
        log.info("resuming after iteration %d", state.iteration)
    done_now = 0
    # iterations 0..max_iter; the log lines only (each iteration also logs its own line)
    bar = Progress(total=params.max_iter + 1, initial=0 if state is None else state.iteration + 1, desc=desc,
                   unit="iter", disable=True, logger=log)
    while (reason := stop_reason(state, params)) is None:
        if max_iterations_this_call is not None and done_now >= max_iterations_this_call:
            break
        state = run_iteration(inp, params, state)
        inp.checkpoints.save(state)
        done_now += 1
        bar.update(1)
    bar.set_postfix(converged=reason == "converged")
    bar.close()
    return ManifoldResult(labels=inp.graph.to_grid(state.labels.astype(np.int16), fill=-1), rows=state.rows,
                          embedding=state.embedding, first_embedding=state.first_embedding,
                          models=state.models, pairwise=state.pairwise, medians=state.medians,
                          converged=reason == "converged", sigma2=float(state.rows[-1]["sigma2"]))


def embed_grid(embedding: Embedding, features, valid: np.ndarray):
    """Yield (H, W, dim) float32 embedded maps per image (zeros at invalid cells)."""
    valid = np.asarray(valid, dtype=bool)
    for i in range(valid.shape[0]):
        f = np.asarray(features[i])
        out = np.zeros(f.shape[:2] + (embedding.dim,), dtype=np.float32)
        if valid[i].any():
            out[valid[i]] = embedding.embed(f[valid[i]])
        yield out


@dataclass(frozen=True)
class ManifoldOutputs:
    """The files the manifold rule declares (its ``output:``); the rule owns the layout.

    convergence: convergence.csv; embedding: embedding.npz (the last KFD embedding);
    part_models: part_models.npz; labels: labels.zarr (N, H, W) int16, -1 = invalid cell;
    embedded / embedded_iter1: feature stores (N, H, W, dim) of the last iteration's and of
    iteration 1's embedding (iteration 1 is the first with a KFD embedding; for the ablation);
    figure: convergence.png."""

    convergence: Path
    embedding: Path
    part_models: Path
    labels: Path
    embedded: Path
    embedded_iter1: Path
    figure: Path

    @classmethod
    def from_mapping(cls, paths) -> "ManifoldOutputs":
        """From a mapping (or Snakemake's ``output``) with one entry per field."""
        return cls(**{f.name: Path(paths[f.name]) for f in dataclasses.fields(cls)})


def write_outputs(result: ManifoldResult, outputs: ManifoldOutputs, features, valid: np.ndarray,
                  store_attrs: dict, params: ManifoldParams, title: str = "",
                  embedded_dtype=np.float16) -> None:
    """Write the stage's artifacts to ``outputs`` (each atomically). ``store_attrs``: the input
    feature store's attrs (ids, geometry); ``title``: the convergence figure's title."""
    import pandas as pd
    import zarr

    from .metrics import plot_convergence

    for path in dataclasses.astuple(outputs):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(outputs.convergence) as tmp:
        pd.DataFrame(result.rows).to_csv(tmp, index=False, float_format="%.6g")
    meta = np.str_(json.dumps({"params": dataclasses.asdict(params), "converged": result.converged,
                               "iterations": result.rows[-1]["iteration"]}))
    with atomic_path(outputs.embedding) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **result.embedding.state(), meta=meta)
    with atomic_path(outputs.part_models) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **result.models.state(), pairwise=result.pairwise, medians=result.medians,
                     sigma2=np.float64(result.sigma2), meta=meta)
    with atomic_path(outputs.labels) as tmp:
        N, H, W = result.labels.shape
        arr = zarr.create_array(store=str(tmp), shape=(N, H, W), chunks=(1, H, W), dtype=np.int16,
                                fill_value=-1, dimension_names=["image", "row", "col"], zarr_format=3)
        arr[:] = result.labels
        arr.attrs.update({"image_ids": list(store_attrs.get("image_ids", [])), "n_parts": params.n_parts,
                          "invalid": -1, "complete": True})
    for path, emb in ((outputs.embedded, result.embedding), (outputs.embedded_iter1, result.first_embedding)):
        write_embedded(path, emb, features, valid, store_attrs, dtype=embedded_dtype)
    plot_convergence(result.rows, outputs.figure, title=title)


def write_embedded(path: str | Path, embedding: Embedding, features, valid: np.ndarray, store_attrs: dict,
                   dtype=np.float16) -> None:
    """Write the embedded store of ``features`` (N, H, W, C) / ``valid`` (N, H, W) at ``path``
    (the feature store layout, C = ``embedding.dim``); ``store_attrs``: the input feature
    store's attrs (ids, geometry)."""
    from ..features.store import write_feature_store

    attrs = {k: v for k, v in store_attrs.items() if k != "complete"}
    attrs.update({"embedding": "kfd", "source_backbone": store_attrs.get("backbone"),
                  "normalisation": "none (KFD embedding)", "channels": embedding.dim})
    write_feature_store(path, embed_grid(embedding, features, valid), valid, None, attrs, dtype=dtype)


def load_embedding(path: str | Path) -> Embedding:
    """The fitted embedding of a manifold job's ``embedding.npz`` (DatasetError naming the file
    when it is missing or not one)."""
    from ..errors import DatasetError

    try:
        with np.load(path, allow_pickle=False) as z:
            return Embedding.from_state({k: z[k] for k in z.files})
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable manifold embedding ({type(exc).__name__}: {exc})") from None


def embed_new_images(embedding_npz: str | Path, features: str | Path, out: str | Path) -> int:
    """Embed every image of the feature store ``features`` with a manifold fitted elsewhere
    (``embedding_npz``, e.g. on another set of images: the inductive protocol's held-out half
    is embedded as a new image would be) and write the embedded store ``out`` (the layout of a
    manifold job's ``embedded.zarr``). Returns the number of images."""
    from ..features.store import FeatureStore

    emb = load_embedding(embedding_npz)
    store = FeatureStore.open(features)
    write_embedded(out, emb, store.features, store.valid, store.attrs)
    return len(store)
