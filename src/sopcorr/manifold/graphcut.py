"""Multi-label graph-cut refinement on 8-connected feature grids (paper section 4, eq. 9).

Energy of a labelling l over the valid cells of a batch of grids:
``E(l) = sum_p U[p, l_p] + sum_{(p,q) in E} V[l_p, l_q]`` with E the 8-connected neighbour
pairs (within one image, valid cells only) and V a symmetric (L, L) matrix with zero diagonal.

Solvers (move making, Boykov, Veksler & Zabih 2001) on PyMaxflow's ``maxflow.Graph`` with
vectorised node/edge insertion. Images are independent, so every move is solved for *all
images of a batch at once* in one graph (disjoint components): the Python overhead is paid per
move, not per image.

* ``alpha_beta_swap``: valid for any semimetric V (V >= 0, V[a, a] = 0) — the paper's
  ``w exp(-d/sigma^2)`` is one. Converges to a local minimum w.r.t. swap moves.
* ``alpha_expansion``: requires a metric (triangle inequality) for its moves to be
  submodular, e.g. ``w (1 - exp(-d / sigma^2))``; within a factor 2 max V / min V of the optimum.
  Non-submodular edge terms are truncated (and any move that would raise the energy rejected).

Every move is accepted only if it does not increase the energy, so the energy is monotone.
``icm`` (iterated conditional modes) is the greedy baseline.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import maxflow
import numpy as np

log = logging.getLogger(__name__)

#: the 8 neighbour offsets (drow, dcol); the first four are the "forward" half
OFFSETS = [(0, 1), (1, -1), (1, 0), (1, 1), (0, -1), (-1, 1), (-1, 0), (-1, -1)]


@dataclass
class GridGraph:
    """The 8-connected graph of the valid cells of a (N, H, W) batch.

    index: (N, H, W) int64 node id of each cell, -1 where invalid;
    nbr:   (n, 8) int64 neighbour node ids (OFFSETS order), -1 where absent;
    edges: (E, 2) int64 undirected edges (each once)."""

    index: np.ndarray
    nbr: np.ndarray
    edges: np.ndarray

    @property
    def n_nodes(self) -> int:
        return len(self.nbr)

    @classmethod
    def from_valid(cls, valid: np.ndarray) -> "GridGraph":
        valid = np.asarray(valid, dtype=bool)
        if valid.ndim == 2:
            valid = valid[None]
        N, H, W = valid.shape
        index = np.full(valid.shape, -1, dtype=np.int64)
        index[valid] = np.arange(int(valid.sum()))
        pad = np.full((N, H + 2, W + 2), -1, dtype=np.int64)
        pad[:, 1:-1, 1:-1] = index
        nbr = np.empty((int(valid.sum()), 8), dtype=np.int64)
        for j, (dr, dc) in enumerate(OFFSETS):
            nbr[:, j] = pad[:, 1 + dr:1 + dr + H, 1 + dc:1 + dc + W][valid]
        fwd = nbr[:, :4]
        src = np.repeat(np.arange(len(nbr)), 4).reshape(-1, 4)
        ok = fwd >= 0
        edges = np.stack([src[ok], fwd[ok]], axis=1)
        return cls(index, nbr, edges)

    def to_nodes(self, grid: np.ndarray) -> np.ndarray:
        """(N, H, W, ...) per-cell array -> (n, ...) per-node array."""
        return np.asarray(grid)[self.index >= 0]

    def to_grid(self, values: np.ndarray, fill=-1) -> np.ndarray:
        """(n, ...) per-node array -> (N, H, W, ...) with ``fill`` at invalid cells."""
        values = np.asarray(values)
        out = np.full(self.index.shape + values.shape[1:], fill, dtype=values.dtype)
        out[self.index >= 0] = values
        return out


def energy(graph: GridGraph, unary: np.ndarray, V: np.ndarray, labels: np.ndarray) -> float:
    """Total energy: unary (n, L), V (L, L), labels (n,)."""
    e = unary[np.arange(len(labels)), labels].sum(dtype=np.float64)
    a, b = graph.edges[:, 0], graph.edges[:, 1]
    return float(e + V[labels[a], labels[b]].sum(dtype=np.float64))


def per_image_energy(graph: GridGraph, unary: np.ndarray, V: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) energy of each image of the batch."""
    img = np.nonzero(graph.index >= 0)[0]
    e = np.bincount(img, weights=unary[np.arange(len(labels)), labels], minlength=graph.index.shape[0])
    a, b = graph.edges[:, 0], graph.edges[:, 1]
    e += np.bincount(img[a], weights=V[labels[a], labels[b]], minlength=graph.index.shape[0])
    return e


def _padded(V: np.ndarray) -> np.ndarray:
    """(L+1, L+1) copy of V with a zero row/column for the 'no neighbour' label -1 (index L)."""
    L = len(V)
    Vp = np.zeros((L + 1, L + 1))
    Vp[:L, :L] = V
    return Vp


def check_pairwise(V: np.ndarray) -> np.ndarray:
    V = np.asarray(V, dtype=np.float64)
    if V.ndim != 2 or V.shape[0] != V.shape[1]:
        raise ValueError(f"pairwise matrix must be square, got shape {V.shape}")
    if not np.allclose(V, V.T) or np.any(np.diag(V) != 0) or np.any(V < 0):
        raise ValueError("pairwise matrix must be symmetric, non-negative, with a zero diagonal")
    return V


def _swap_move(a: int, b: int, unary: np.ndarray, V: np.ndarray, Vp: np.ndarray, nbr: np.ndarray,
               deg: np.ndarray, lab_ext: np.ndarray, loc: np.ndarray, members: list, cand: list,
               sure: np.ndarray, chunk: int) -> tuple[int, bool]:
    """One alpha-beta swap move of the labels a < b (see :func:`alpha_beta_swap`), applied in place
    to ``lab_ext`` (n + 1,: the labels, then L), ``members`` (sorted node ids per label) and
    ``cand`` (positions in ``members[k]`` of the nodes that may be active: those not ``sure``
    of their label). ``loc`` (n + 1,) is -1 everywhere on entry and on return. Returns (number
    of nodes that changed label, whether any node was active).

    The per-node work on the (|A|, 8) neighbour arrays runs ``chunk`` active nodes at a time (the
    same row-wise arithmetic, so the same values), and every array of the move is freed when it
    returns: peak memory O(|A|) words, not O(8 |A|)."""
    Ma, Mb = members[a], members[b]
    pa, pb = cand[a], cand[b]
    if len(pa) + len(pb) == 0:
        return 0, False
    # the candidates labelled a, then those labelled b, in node order: every active node of S =
    # [Ma, Mb] is one (see alpha_beta_swap), so A below is S's active nodes in S's order
    C = np.concatenate([Ma[pa], Mb[pb]])
    kc = len(pa)
    u_a, u_b = unary[:, a][C], unary[:, b][C]  # unary[C, a], unary[C, b]
    delta = np.abs(V[a] - V[b]).max()
    # unary[C, other] - unary[C, current]
    margin = np.concatenate([u_b[:kc] - u_a[:kc], u_a[kc:] - u_b[kc:]])
    act = margin <= deg[C] * delta + 1e-12
    del margin
    A = C[act]
    nA = len(A)
    if nA == 0:
        return 0, False
    old_a = np.flatnonzero(act) < kc  # labelled a before the move
    uA_a, uA_b = u_a[act], u_b[act]
    del u_a, u_b, C
    vab = V[a, b]
    loc[A] = np.arange(nA)
    inA = np.empty((nA, nbr.shape[1]), dtype=bool)  # neighbour is in A
    n_a = np.empty(nA, dtype=np.int64)  # neighbours in A labelled a
    n_b = np.empty(nA, dtype=np.int64)
    cost_a = np.empty(nA)  # local cost of labelling the node a (unary + edges, in-A edges to b excluded)
    cost_b = np.empty(nA)
    for s in range(0, nA, chunk):
        e = min(s + chunk, nA)
        nb = nbr[A[s:e]]
        nl = lab_ext[nb]  # neighbour labels, L where there is no neighbour (nb = -1)
        ok = loc[nb] >= 0  # loc[-1] = -1: no neighbour is not in A
        inA[s:e] = ok
        n_a[s:e] = ((nl == a) & ok).sum(1)
        n_b[s:e] = ((nl == b) & ok).sum(1)
        cost_a[s:e] = uA_a[s:e] + Vp[a][nl].sum(1) - vab * n_b[s:e]
        cost_b[s:e] = uA_b[s:e] + Vp[b][nl].sum(1) - vab * n_a[s:e]
    del nb, nl, ok
    # local energy (unary + edges touching A, in-A edges counted once)
    e_old = np.where(old_a, cost_a, cost_b).sum() + vab * np.where(old_a, n_b, n_a).sum() / 2
    g = maxflow.Graph[float](nA, 4 * nA)
    nodes = g.add_nodes(nA)
    m = np.minimum(cost_a, cost_b)
    # sink segment -> label b: pays the source capacity
    g.add_grid_tedges(nodes, cost_b - m, cost_a - m)
    del m, cost_a, cost_b, n_a, n_b
    if vab > 0:
        for s in range(0, nA, chunk):  # the edges in node order, as one add_edges call would add them
            e = min(s + chunk, nA)
            fwd = inA[s:e, :4]
            if fwd.any():
                i = s + np.repeat(np.arange(e - s), 4).reshape(-1, 4)[fwd]
                j = loc[nbr[A[s:e], :4][fwd]]
                caps = np.full(len(i), vab)
                g.add_edges(i, j, caps, caps)
    g.maxflow()
    new_b = g.get_grid_segments(nodes)  # True: label b
    del g, nodes
    loc[A] = -1
    if np.array_equal(new_b, ~old_a):  # no node changes
        return 0, True
    new = np.where(new_b, b, a)
    old = np.where(old_a, a, b)
    lab_ext[A] = new
    n_a2 = np.empty(nA, dtype=np.int64)
    n_b2 = np.empty(nA, dtype=np.int64)
    cost_new_b = np.empty(nA)
    cost_new_a = np.empty(nA)
    for s in range(0, nA, chunk):
        e = min(s + chunk, nA)
        nl2 = lab_ext[nbr[A[s:e]]]
        ok = inA[s:e]
        n_a2[s:e] = ((nl2 == a) & ok).sum(1)
        n_b2[s:e] = ((nl2 == b) & ok).sum(1)
        cost_new_b[s:e] = uA_b[s:e] + Vp[b][nl2].sum(1) - vab * n_a2[s:e]
        cost_new_a[s:e] = uA_a[s:e] + Vp[a][nl2].sum(1) - vab * n_b2[s:e]
    e_new = np.where(new_b, cost_new_b, cost_new_a).sum() + vab * np.where(new_b, n_a2, n_b2).sum() / 2
    if e_new > e_old + 1e-9 * max(1.0, abs(e_old)):
        lab_ext[A] = old  # numerical safety: never accept an increase
        return 0, True
    ka = len(Ma)
    S = np.concatenate([Ma, Mb])
    lab_s = np.where(np.arange(len(S)) < ka, a, b)
    lab_s[np.concatenate([pa, ka + pb])[act]] = new  # A's positions in S
    for k in (a, b):
        members[k] = np.sort(S[lab_s == k], kind="stable")  # two sorted runs: a merge
        cand[k] = np.flatnonzero(sure[members[k]] != k)
    return int((new != old).sum()), True


def alpha_beta_swap(graph: GridGraph, unary: np.ndarray, V: np.ndarray, labels: np.ndarray,
                    max_sweeps: int = 5, history: list | None = None, chunk: int = 65536) -> np.ndarray:
    """Alpha-beta-swap minimisation of :func:`energy` from ``labels`` (n,) (copied).

    unary: (n, L) float; V: (L, L) semimetric. A sweep tries every pair a < b once; stops after
    a sweep without change or ``max_sweeps``. ``history`` (if given) receives the energy after
    each sweep. Returns the new (n,) int64 labels.

    Exact pruning: a node p labelled a (or b) whose unary margin ``U[p, b] - U[p, a]`` exceeds
    ``deg(p) * max_l |V[a, l] - V[b, l]|`` is in no optimal swap move (un-switching it lowers
    the energy whatever its neighbours do), so only the remaining *active* nodes enter the
    max-flow graph; pruned nodes act as fixed neighbours. With confident posteriors most pairs
    have no active node at all. ``chunk``: active nodes per block of the per-node work (memory
    only; the result does not depend on it)."""
    V = check_pairwise(V)
    unary = np.asarray(unary, dtype=np.float64)
    n, L = unary.shape
    # the labels and loc (position of a node in the current move, -1: not in it) carry one extra
    # entry at index n, read through a neighbour id of -1: label L (Vp's zero row), loc -1
    lab_ext = np.empty(n + 1, dtype=np.int64)
    lab_ext[:n] = labels
    lab_ext[n] = L
    labels = lab_ext[:n]
    if n == 0:
        return labels.copy()
    Vp = _padded(V)
    nbr = graph.nbr
    deg = (nbr >= 0).sum(1)
    loc = np.full(n + 1, -1, dtype=np.int64)
    chunk = max(int(chunk), 1)
    # sure[p] = l: l is p's unary favourite by more than any swap move can recover, so while p
    # is labelled l it is in no active set: its margin U[p, b] - U[p, l] >= (second smallest
    # U[p]) - U[p, l] > deg(p) * max_ab delta_ab + 1e-12 >= the threshold of every pair (l, b)
    delta_max = max((np.abs(V[a] - V[b]).max() for a in range(L) for b in range(a + 1, L)), default=0.0)
    sure = np.full(n, -1, dtype=np.int64)
    for s in range(0, n, chunk):
        u = unary[s:s + chunk]
        two = np.partition(u, 1, axis=1) if L > 1 else np.concatenate([u, u], axis=1)
        confident = two[:, 1] - two[:, 0] > deg[s:s + chunk] * delta_max + 1e-12
        sure[s:s + chunk] = np.where(confident, u.argmin(1), -1)
    del u, two, confident
    members = [np.flatnonzero(labels == k) for k in range(L)]  # sorted node ids per label
    cand = [np.flatnonzero(sure[members[k]] != k) for k in range(L)]
    # a pair whose last move had no active node has none again until members[a] or members[b]
    # changes (the active set depends on them alone): it is skipped
    version = [0] * L
    idle = {}
    for _ in range(max_sweeps):
        changed = 0
        for a in range(L):
            for b in range(a + 1, L):
                if idle.get((a, b)) == (version[a], version[b]):
                    continue
                n_changed, active = _swap_move(a, b, unary, V, Vp, nbr, deg, lab_ext, loc, members, cand,
                                               sure, chunk)
                if n_changed:
                    changed += n_changed
                    version[a] += 1
                    version[b] += 1
                if not active:
                    idle[(a, b)] = (version[a], version[b])
        if history is not None:
            history.append(energy(graph, unary, V, labels))
        if changed == 0:
            break
    return labels.copy()


def alpha_expansion(graph: GridGraph, unary: np.ndarray, V: np.ndarray, labels: np.ndarray,
                    max_sweeps: int = 5, history: list | None = None) -> np.ndarray:
    """Alpha-expansion minimisation of :func:`energy` from ``labels`` (n,) (copied).

    V should be a metric; non-submodular pair terms are truncated to submodular ones and a
    move that raises the true energy is rejected. Returns (n,) int64 labels."""
    V = check_pairwise(V)
    unary = np.asarray(unary, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).copy()
    n, L = unary.shape
    if n == 0:
        return labels
    p, q = graph.edges[:, 0], graph.edges[:, 1]
    rows = np.arange(n)
    e_cur = energy(graph, unary, V, labels)
    warned = False
    for _ in range(max_sweeps):
        changed = 0
        for a in range(L):
            lp, lq = labels[p], labels[q]
            A = V[lp, lq]
            B = V[lp, a]
            C = V[a, lq]
            cost0 = unary[rows, labels].copy()
            cost1 = unary[:, a].copy()
            np.add.at(cost1, p, C - A)
            np.add.at(cost1, q, -C)  # D - C with D = V[a, a] = 0
            w = B + C - A
            if not warned and np.any(w < -1e-12):
                log.warning("alpha_expansion: the pairwise term is not a metric; truncating non-submodular terms")
                warned = True
            w = np.maximum(w, 0)
            g = maxflow.Graph[float](n, len(p))
            nodes = g.add_nodes(n)
            m = np.minimum(cost0, cost1)
            g.add_grid_tedges(nodes, cost1 - m, cost0 - m)  # sink (x=1) -> take label a
            sel = w > 0
            if sel.any():
                g.add_edges(p[sel], q[sel], w[sel], np.zeros(int(sel.sum())))
            g.maxflow()
            x = g.get_grid_segments(nodes)
            if not x.any():
                continue
            new = np.where(x, a, labels)
            if np.array_equal(new, labels):
                continue
            e_new = energy(graph, unary, V, new)
            if e_new <= e_cur + 1e-9 * max(1.0, abs(e_cur)):
                changed += int((new != labels).sum())
                labels, e_cur = new, e_new
        if history is not None:
            history.append(e_cur)
        if changed == 0:
            break
    return labels


def icm(graph: GridGraph, unary: np.ndarray, V: np.ndarray, labels: np.ndarray, max_sweeps: int = 20) -> np.ndarray:
    """Iterated conditional modes (greedy node-wise descent), the baseline. Returns (n,) labels."""
    V = check_pairwise(V)
    labels = np.asarray(labels, dtype=np.int64).copy()
    n, L = unary.shape
    Vp = _padded(V)
    for _ in range(max_sweeps):
        changed = False
        for i in range(n):
            nl = np.where(graph.nbr[i] >= 0, labels[graph.nbr[i]], L)
            c = unary[i] + Vp[:L][:, nl].sum(1)
            best = int(np.argmin(c))
            if c[best] < c[labels[i]] - 1e-12:
                labels[i] = best
                changed = True
        if not changed:
            break
    return labels


def solve(graph: GridGraph, unary: np.ndarray, V: np.ndarray, labels: np.ndarray,
          solver: str = "swap", max_sweeps: int = 5, history: list | None = None) -> np.ndarray:
    """Dispatch to ``alpha_beta_swap`` ('swap') or ``alpha_expansion`` ('expansion')."""
    if solver == "swap":
        return alpha_beta_swap(graph, unary, V, labels, max_sweeps, history)
    if solver == "expansion":
        return alpha_expansion(graph, unary, V, labels, max_sweeps, history)
    raise ValueError(f"unknown solver {solver!r} (swap, expansion)")
