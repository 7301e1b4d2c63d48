"""Geometry-aware dense matching: the improved variant's matcher.

The paper's key insight is that *the geometric structure between object parts is consistent
across instances*. The paper exploits it only inside one image (the geodesic pairwise term of
the graph cut). This module exploits it between the two images of a pair:

1. **Edge-aware neighbourhood consensus** (optional): each cell's descriptor is the
   concatenation of its (2r+1)^2 neighbours' descriptors, so a match must agree on a patch of
   the grid, not on one cell (equivalent to summing the 4-D correlation over
   translation-consistent offsets). With ``gate_power`` γ > 0 a neighbour's block is weighted by
   ``max(cos(f_centre, f_neighbour), 0)^γ`` (the centre by 1), so the consensus aggregates over
   the part the cell lies on and not over the background next to it (a bilateral filter of the
   correlation). Plain consensus (γ = 0) helps on photographs where the object fills the grid
   and hurts on small objects, whose 3x3 neighbourhood is mostly background (docs/RESULTS.md).
   The similarity of two images' stacked descriptors is computed in that summed form
   (:func:`consensus_similarity` of :func:`consensus_terms`): one product of the plain
   features instead of one of descriptors (2r+1)^2 times longer.
2. **Mutual nearest neighbours** between the two grids are the confident matches.
3. **Affine maps** between the grids are fitted to them robustly (similarity-weighted RANSAC,
   then weighted least squares on the inliers). ``prior='global'``: one affine for the whole
   object. ``prior='piecewise'``: sequential RANSAC, up to ``max_models`` affines, each further
   one kept only if its inliers carry at least ``min_support`` of the matches' weight; every
   source cell takes the affine whose inliers are densest around it (Gaussian kernel of
   ``bandwidth`` grid sides). Articulated objects (a leg, a neck) move rigidly part by part,
   not as a whole; a single affine pulls their matches to the body's motion.
4. Every source cell is matched to the target cell maximising
   ``cos(f_s, f_t) - strength * ||c_t - A_k(c_s)||^2 / G^2``
   where c are cell coordinates, A_k the cell's affine and G the target grid's side: a Gaussian
   location prior (log-space) centred on the affine prediction, in units of the grid so it does
   not depend on the resolution.

All arrays follow sopcorr.geometry: feature grids (H, W, C), validity (H, W), results as a
:class:`~sopcorr.geometry.DenseCorrespondence`. The matcher over frames (descriptors of raw
features + embedding, settings, the pseudo ground truth's forward-backward check) is
:mod:`sopcorr.matchers.geometric`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry import DenseCorrespondence, FeatureGrid

__all__ = ["Affine", "ransac_triples", "fit_affine_ransac", "fit_affine_models", "assign_models",
           "neighbourhood_descriptors", "ConsensusTerms", "consensus_terms", "consensus_similarity",
           "mutual_matches", "prior_target_cells", "prior_distance2", "geometric_correspondence", "PRIORS"]

PRIORS = ("global", "piecewise")


@dataclass
class Affine:
    """x' = [x, y, 1] @ matrix, matrix (3, 2); ``inliers`` (M,) bool over the fitted matches."""

    matrix: np.ndarray
    inliers: np.ndarray

    def apply(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        return np.concatenate([xy, np.ones(xy.shape[:-1] + (1,))], axis=-1) @ self.matrix


def _lengths(v: np.ndarray) -> np.ndarray:
    """(..., 2) vectors -> (...) Euclidean lengths, bit for bit ``np.linalg.norm(v, axis=-1)``
    (which is ``sqrt(x * x + y * y)``) without its slow reduction over a length-2 axis."""
    return np.sqrt(v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1])


def _weighted_lstsq(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> np.ndarray:
    X = np.c_[src, np.ones(len(src))]
    sw = np.sqrt(np.maximum(w, 1e-12))[:, None]
    return np.linalg.lstsq(X * sw, dst * sw, rcond=None)[0]


_LOW32 = np.uint64(0xFFFFFFFF)


def ransac_triples(rng: np.random.Generator, m: int, iterations: int) -> np.ndarray:
    """(iterations, 3) int64 minimal samples of RANSAC: exactly
    ``np.stack([rng.choice(m, 3, replace=False) for _ in range(iterations)])`` (the same
    triples from the same generator), drawn in one vectorised pass instead of ``iterations``
    calls (a third of the geometric matchers' time in the viewer job went to that loop).

    NumPy's ``Generator.choice(m, 3, replace=False)`` (m <= 10000) is Floyd's algorithm then a
    shuffle, five bounded draws from the bit generator's 32-bit stream, each by Lemire's
    multiply-shift: ``(u * n) >> 32`` for a draw u in [0, n) (Floyd: n = m - 2, m - 1, m, a
    value already taken replaced by n - 1; the shuffle: n = 3, 2). The rare draw whose low
    bits would make Lemire's method test for rejection, m < 4 (a draw over one value is not
    made), a bit generator other than PCG64 (``default_rng``'s) or with a half-used 64-bit
    output, or m > 10000 take NumPy's own loop, so
    the result is always NumPy's (tests/test_flow_geometric.py compares them). The generator is
    left in an unspecified state: the caller draws nothing after."""
    iterations = int(iterations)
    state = rng.bit_generator.state
    if (type(rng.bit_generator) is np.random.PCG64 and 4 <= m <= 10000 and iterations > 0
            and not state.get("has_uint32", 0)):
        raw = rng.bit_generator.random_raw((5 * iterations + 1) // 2)
        u = np.empty(2 * len(raw), np.uint64)          # a 64-bit output's low half, then its high half
        u[0::2], u[1::2] = raw & _LOW32, raw >> np.uint64(32)
        n = np.array([m - 2, m - 1, m, 3, 2], np.uint64)
        prod = u[:5 * iterations].reshape(iterations, 5) * n
        if not ((prod & _LOW32) < n).any():
            v = (prod >> np.uint64(32)).astype(np.int64)
            a = v[:, 0]
            b = np.where(v[:, 1] == a, m - 2, v[:, 1])
            c = np.where((v[:, 2] == a) | (v[:, 2] == b), m - 1, v[:, 2])
            out = np.stack([a, b, c], 1)
            rows = np.arange(iterations)
            for i, col in ((2, 3), (1, 4)):               # the shuffle: swap slot i with slot v[:, col]
                j = v[:, col]
                tmp = out[rows, j].copy()
                out[rows, j] = out[:, i]
                out[:, i] = tmp
            return out
        rng.bit_generator.state = state
    return np.stack([rng.choice(m, 3, replace=False) for _ in range(iterations)]).reshape(-1, 3)


def fit_affine_ransac(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None,
                      threshold: float = 1.0, iterations: int = 300, seed: int = 0) -> Affine:
    """Robustly fit dst ~ A(src) for point sets (M, 2).

    Hypotheses come from random minimal samples of 3 matches; a hypothesis scores the summed
    ``weights`` of its inliers (residual <= threshold). The best inlier set is refined by weighted
    least squares. With fewer than 3 matches the identity map is returned (no inliers)."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    m = len(src)
    w = np.ones(m) if weights is None else np.clip(np.asarray(weights, dtype=np.float64), 0, None)
    ident = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    if m < 3:
        return Affine(ident, np.zeros(m, dtype=bool))
    rng = np.random.default_rng(seed)
    X = np.c_[src, np.ones(m)]
    samples = ransac_triples(rng, m, iterations)                                          # (I, 3)
    A = X[samples]                                                                       # (I, 3, 3)
    B = dst[samples]                                                                     # (I, 3, 2)
    det = np.linalg.det(A)
    ok = np.abs(det) > 1e-9
    best_score, best_inl = -1.0, None
    if ok.any():
        M = np.linalg.solve(A[ok], B[ok])                                                # (I', 3, 2)
        res = _lengths(X[None] @ M - dst[None])                                          # (I', m)
        inl = res <= threshold
        scores = inl.astype(np.float64) @ w
        k = int(np.argmax(scores))
        best_score, best_inl = scores[k], inl[k]
    if best_inl is None or best_inl.sum() < 3:
        return Affine(ident, np.zeros(m, dtype=bool))
    matrix = _weighted_lstsq(src[best_inl], dst[best_inl], w[best_inl])
    # one re-estimation round with the refined model
    inl = np.linalg.norm(X @ matrix - dst, axis=1) <= threshold
    if inl.sum() >= 3:
        matrix = _weighted_lstsq(src[inl], dst[inl], w[inl])
        best_inl = inl
    return Affine(matrix, best_inl)


def fit_affine_models(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None,
                      threshold: float = 1.0, iterations: int = 300, seed: int = 0,
                      max_models: int = 3, min_support: float = 0.15) -> list[Affine]:
    """Sequential RANSAC: up to ``max_models`` affines dst ~ A_k(src) for point sets (M, 2).

    The first model is :func:`fit_affine_ransac` on all matches; each further one is fitted to
    the matches no earlier model explains and kept only if it has >= 4 inliers carrying at
    least ``min_support`` of the total weight (otherwise the search stops). Each returned
    Affine's ``inliers`` (M,) is over all matches, disjoint from the earlier models'."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    m = len(src)
    w = np.ones(m) if weights is None else np.clip(np.asarray(weights, dtype=np.float64), 0, None)
    total = float(w.sum())
    remaining = np.ones(m, dtype=bool)
    models: list[Affine] = []
    for k in range(max(1, int(max_models))):
        idx = np.nonzero(remaining)[0]
        if k > 0 and len(idx) < 4:
            break
        aff = fit_affine_ransac(src[idx], dst[idx], w[idx], threshold=threshold,
                                iterations=iterations, seed=seed + k)
        inl = np.zeros(m, dtype=bool)
        inl[idx[aff.inliers]] = True
        if k > 0 and (inl.sum() < 4 or w[inl].sum() < min_support * total):
            break
        models.append(Affine(aff.matrix, inl))
        remaining &= ~inl
    return models


def assign_models(cells: np.ndarray, models: list[Affine], src: np.ndarray, weights: np.ndarray,
                  bandwidth: float) -> np.ndarray:
    """(N,) index of the model each of the (N, 2) ``cells`` takes: the one whose inlier source
    points (src (M, 2), weights (M,)) have the highest Gaussian kernel density at the cell
    (``bandwidth`` in the units of the coordinates). One model: all zeros."""
    cells = np.asarray(cells, dtype=np.float64).reshape(-1, 2)
    if len(models) <= 1:
        return np.zeros(len(cells), dtype=np.int64)
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    w = np.asarray(weights, dtype=np.float64)
    dens = np.zeros((len(models), len(cells)))
    for k, mdl in enumerate(models):
        p = src[mdl.inliers]
        if len(p):
            d2 = ((cells[:, None, :] - p[None]) ** 2).sum(-1)
            dens[k] = (w[mdl.inliers][None] * np.exp(-d2 / (2.0 * bandwidth ** 2))).sum(1)
    return np.argmax(dens, axis=0)


def neighbourhood_descriptors(feat: np.ndarray | torch.Tensor, valid: np.ndarray | None,
                              radius: int, gate_power: float = 0.0) -> torch.Tensor:
    """(H, W, C) features -> (H, W, C * (2r+1)^2) L2-normalised stacked neighbourhoods (invalid
    cells and the border contribute zeros). radius 0 returns the L2-normalised input.
    ``gate_power`` γ > 0 weights each neighbour's (unit) block by sqrt(max(cos, 0)^γ), cos its
    similarity to the centre cell, before the final normalisation (the centre's weight is 1)."""
    f = torch.as_tensor(np.asarray(feat, dtype=np.float32) if not torch.is_tensor(feat) else feat,
                        dtype=torch.float32)
    f = F.normalize(f, dim=-1, eps=1e-12)
    if valid is not None:
        f = f * torch.as_tensor(np.asarray(valid), dtype=torch.float32, device=f.device)[..., None]
    if radius <= 0:
        return f
    h, w, c = f.shape
    k = 2 * radius + 1
    u = F.unfold(f.permute(2, 0, 1)[None], k, padding=radius)[0]      # (C*k*k, H*W)
    if gate_power > 0:
        u = u.reshape(c, k * k, h * w)
        centre = u[:, (k * k) // 2, :]                                   # (C, H*W)
        gate = (u * centre[:, None, :]).sum(0).clamp(min=0) ** float(gate_power)   # (k*k, H*W)
        gate[(k * k) // 2] = 1.0
        u = (u * gate.sqrt()[None]).reshape(c * k * k, h * w)
    return F.normalize(u.T.reshape(h, w, c * k * k), dim=-1, eps=1e-12)


@dataclass(frozen=True)
class ConsensusTerms:
    """One image's consensus descriptors (:func:`neighbourhood_descriptors`) in factored form,
    for :func:`consensus_similarity`: feat (H * W, C) float32 L2-normalised features (zeros at
    invalid cells); weights ((2r+1)^2, H, W) float32, the weight of each neighbour's block in
    each cell's stacked descriptor, sqrt(gate) / norm (None for radius 0); shape (H, W);
    radius r. Neighbour o = (dy, dx) in row-major order over the (2r+1) x (2r+1) window, as
    ``F.unfold`` orders it."""

    feat: torch.Tensor
    weights: torch.Tensor | None
    shape: tuple[int, int]
    radius: int


def consensus_terms(feat: np.ndarray | torch.Tensor, valid: np.ndarray | None, radius: int,
                    gate_power: float = 0.0) -> ConsensusTerms:
    """The factored form of ``neighbourhood_descriptors(feat, valid, radius, gate_power)``
    (same arguments): the descriptor of cell i is the stack over offsets o of
    ``weights[o, i] * feat[i + o]`` (zeros outside the grid). Memory: H * W * (C + (2r+1)^2)
    floats instead of H * W * C * (2r+1)^2."""
    f = torch.as_tensor(np.asarray(feat, dtype=np.float32) if not torch.is_tensor(feat) else feat,
                        dtype=torch.float32)
    f = F.normalize(f, dim=-1, eps=1e-12)
    if valid is not None:
        f = f * torch.as_tensor(np.asarray(valid), dtype=torch.float32, device=f.device)[..., None]
    h, w, c = f.shape
    if radius <= 0:
        return ConsensusTerms(f.reshape(h * w, c), None, (h, w), 0)
    k = 2 * radius + 1
    fp = F.pad(f.permute(2, 0, 1), (radius,) * 4)                        # (C, H+2r, W+2r)
    nb = torch.stack([fp[:, dy:dy + h, dx:dx + w] for dy in range(k) for dx in range(k)], 1)  # (C, k*k, H, W)
    if gate_power > 0:
        gate = (nb * nb[:, (k * k) // 2][:, None]).sum(0).clamp(min=0) ** float(gate_power)   # (k*k, H, W)
        gate[(k * k) // 2] = 1.0
    else:
        gate = torch.ones(k * k, h, w, device=f.device)
    norm = (gate * (nb * nb).sum(0)).sum(0).sqrt().clamp(min=1e-12)    # the stacked descriptor's norm
    return ConsensusTerms(f.reshape(h * w, c), gate.sqrt() / norm, (h, w), int(radius))


def consensus_similarity(src: ConsensusTerms, tgt: ConsensusTerms) -> torch.Tensor:
    """(Ns, Nt) cosine similarity of two images' consensus descriptors, equal (up to float
    rounding) to ``A @ B.T`` of their :func:`neighbourhood_descriptors` A (Ns, C (2r+1)^2), B:
    sum over offsets o of ``w_s[o, i] w_t[o, j] <f_s(i + o), f_t(j + o)>``, read off one
    (Ns, Nt) product of the plain features shifted by o on both grids. That is (2r+1)^2 times
    fewer multiply-adds than the stacked descriptors' product (docs/PERFORMANCE.md)."""
    if src.radius != tgt.radius:
        raise ValueError(f"consensus radius {src.radius} against {tgt.radius}")
    base = src.feat @ tgt.feat.T                                         # (Ns, Nt)
    r = src.radius
    if r <= 0:
        return base
    (hs, ws), (ht, wt) = src.shape, tgt.shape
    k = 2 * r + 1
    c4 = F.pad(base.reshape(hs, ws, ht, wt), (r,) * 8)                  # zero beyond both grids
    out = torch.zeros(hs, ws, ht, wt, dtype=base.dtype, device=base.device)
    for o in range(k * k):
        dy, dx = divmod(o, k)
        block = c4[dy:dy + hs, dx:dx + ws, dy:dy + ht, dx:dx + wt]        # <f_s(i + o), f_t(j + o)>
        out.addcmul_(block * src.weights[o][:, :, None, None], tgt.weights[o])
    return out.reshape(hs * ws, ht * wt)


def mutual_matches(fs: torch.Tensor | None, ft: torch.Tensor | None, valid_s: torch.Tensor, valid_t: torch.Tensor,
                   sim: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mutual nearest neighbours of flat L2-normalised features fs (Ns, C), ft (Nt, C) among valid
    cells (``sim``: their similarity ``fs @ ft.T`` when the caller has it already, e.g.
    :func:`consensus_similarity`; fs and ft are then not read and may be None). Returns
    (source index (M,), target index (M,), similarity (M,))."""
    sim = fs @ ft.T if sim is None else sim
    neg = torch.tensor(-float("inf"))
    sim = torch.where(valid_s[:, None] & valid_t[None, :], sim, neg)
    st = sim.argmax(1)
    ts = sim.argmax(0)
    keep = (ts[st] == torch.arange(len(st))) & valid_s
    si = torch.nonzero(keep)[:, 0]
    ti = st[si]
    return si.numpy(), ti.numpy(), sim[si, ti].numpy()


def prior_target_cells(sim: torch.Tensor, vs_t: torch.Tensor, vt_t: torch.Tensor, shape_src: tuple[int, int],
                       shape_tgt: tuple[int, int], prior: str = "piecewise", max_models: int = 3,
                       min_support: float = 0.15, bandwidth: float = 0.1, ransac_threshold: float = 0.08,
                       ransac_iterations: int = 300, seed: int = 0) -> torch.Tensor:
    """The location prior's predicted target cell of every source cell: (Ns, 2) float32 (col,
    row). sim (Ns, Nt): the consensus descriptors' similarity (:func:`consensus_similarity`),
    vs_t / vt_t (Ns,) / (Nt,) bool; affine models (one, or up to ``max_models`` with
    'piecewise') fitted by RANSAC to the mutual matches, each source cell assigned to a model
    (:func:`assign_models`)."""
    hs, ws = shape_src
    ht, wt = shape_tgt
    gside = float(max(ht, wt))
    ys, xs = np.divmod(np.arange(hs * ws), ws)
    yt, xt = np.divmod(np.arange(ht * wt), wt)
    si, ti, w = mutual_matches(None, None, vs_t, vt_t, sim=sim)
    w = np.clip(w, 0, None)
    src_pts = np.c_[xs[si], ys[si]]
    models = fit_affine_models(src_pts, np.c_[xt[ti], yt[ti]], w, threshold=ransac_threshold * gside,
                               iterations=ransac_iterations, seed=seed,
                               max_models=max_models if prior == "piecewise" else 1,
                               min_support=min_support)
    cells_src = np.c_[xs, ys]
    which = assign_models(cells_src, models, src_pts, w, bandwidth * float(max(hs, ws)))
    pred_np = np.zeros((hs * ws, 2))
    for k, mdl in enumerate(models):
        pred_np[which == k] = mdl.apply(cells_src[which == k])
    return torch.as_tensor(pred_np, dtype=torch.float32)


def prior_distance2(pred: torch.Tensor, shape_tgt: tuple[int, int]) -> torch.Tensor:
    """(Ns, Nt) squared distance in cells of every target cell to each source cell's predicted
    cell ``pred`` (Ns, 2)."""
    ht, wt = shape_tgt
    yt, xt = np.divmod(np.arange(ht * wt), wt)
    tx = torch.as_tensor(xt, dtype=torch.float32)
    ty = torch.as_tensor(yt, dtype=torch.float32)
    return (tx[None] - pred[:, :1]) ** 2 + (ty[None] - pred[:, 1:]) ** 2


def geometric_correspondence(feat_src: np.ndarray, feat_tgt: np.ndarray, grid_src: FeatureGrid,
                             grid_tgt: FeatureGrid, valid_src: np.ndarray | None = None,
                             valid_tgt: np.ndarray | None = None, strength: float = 8.0,
                             consensus_radius: int = 1, consensus_gate: float = 4.0,
                             prior: str = "piecewise", max_models: int = 3, min_support: float = 0.15,
                             bandwidth: float = 0.1, ransac_threshold: float = 0.08,
                             ransac_iterations: int = 300, seed: int = 0, consensus_src: ConsensusTerms | None = None,
                             consensus_tgt: ConsensusTerms | None = None) -> DenseCorrespondence:
    """Dense matching under an affine location prior (see the module docstring).

    feat_src (Hs, Ws, C), feat_tgt (Ht, Wt, C); valid_* (H, W) bool (default: the grids' valid
    masks). ``strength`` is the prior's weight per squared grid-normalised displacement
    (0 = plain nearest neighbour on the consensus descriptors); ``consensus_gate`` the γ of
    :func:`neighbourhood_descriptors`; ``prior`` 'global' (one affine) or 'piecewise'
    (:func:`fit_affine_models` + :func:`assign_models`, ``bandwidth`` as a fraction of the source
    grid side); ``ransac_threshold`` is the inlier distance as a fraction of the target grid
    side. ``consensus_src`` / ``consensus_tgt``: the images' consensus descriptors in factored
    form, ``consensus_terms(feat, valid, consensus_radius, consensus_gate)``, when the caller
    keeps them per image (a matcher reusing an image across pairs); computed here otherwise.
    Returns the correspondence whose score is the cosine similarity of the chosen match (of the
    consensus descriptors) and whose valid mask is the source valid mask."""
    if prior not in PRIORS:
        raise ValueError(f"flow.geometric.prior: unknown prior {prior!r} (expected one of {', '.join(PRIORS)})")
    hs, ws = feat_src.shape[:2]
    ht, wt = feat_tgt.shape[:2]
    vs = grid_src.valid_mask() if valid_src is None else np.asarray(valid_src, dtype=bool)
    vt = grid_tgt.valid_mask() if valid_tgt is None else np.asarray(valid_tgt, dtype=bool)
    if consensus_src is None:
        consensus_src = consensus_terms(feat_src, vs, consensus_radius, consensus_gate)
    if consensus_tgt is None:
        consensus_tgt = consensus_terms(feat_tgt, vt, consensus_radius, consensus_gate)
    vs_t = torch.as_tensor(vs.reshape(-1))
    vt_t = torch.as_tensor(vt.reshape(-1))
    sim = consensus_similarity(consensus_src, consensus_tgt)          # (Ns, Nt)
    gside = float(max(ht, wt))
    yt, xt = np.divmod(np.arange(ht * wt), wt)
    if strength > 0:
        pred = prior_target_cells(sim, vs_t, vt_t, (hs, ws), (ht, wt), prior=prior, max_models=max_models,
                                  min_support=min_support, bandwidth=bandwidth, ransac_threshold=ransac_threshold,
                                  ransac_iterations=ransac_iterations, seed=seed)
        objective = sim - strength * prior_distance2(pred, (ht, wt)) / gside ** 2
    else:
        objective = sim
    objective = torch.where(vt_t[None, :], objective, torch.tensor(-float("inf")))
    j = objective.argmax(1)
    score = sim.gather(1, j[:, None])[:, 0].numpy().reshape(hs, ws)
    j = j.numpy()
    cells = np.stack([xt[j], yt[j]], axis=1).astype(np.float64)
    target_xy = grid_tgt.cell_to_image(cells).reshape(hs, ws, 2)
    return DenseCorrespondence(target_xy=target_xy, score=score, valid=vs.copy(), grid=grid_src,
                               interpolation="nearest")
