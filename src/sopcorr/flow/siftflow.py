"""A SIFT-flow-style dense matcher for any descriptor grid (Liu, Yuen & Torralba, "SIFT Flow",
PAMI 2011), vectorised in numpy.

Energy of an integer flow w(p) = (u(p), v(p)) in grid cells (source cell p matches target cell
p + w(p))::

    E(w) = sum_p  min(|| s1(p) - s2(p + w(p)) ||_1 / sqrt(C), data_trunc)        data
         + sum_p  eta * (|u(p)| + |v(p)|)                                         small displacement
         + sum_{(p,q) 4-neighbours}  min(alpha |u(p) - u(q)|, d) + min(alpha |v(p) - v(q)|, d)

The data term is the truncated L1 distance of the descriptors divided by sqrt(C) (a constant
rescaling, so that the same parameters suit 128-d SIFT and 1000-d CNN features: for unit-L2
descriptors the scaled distance lies in [0, 2]). A target cell outside the target grid or not
valid costs ``data_trunc``; a source cell that is not valid has no data cost (its flow follows
its neighbours). The smoothness is truncated L1 on the horizontal and vertical flow
separately, the decoupling of SIFT Flow's dual-layer model.

Optimisation: coarse-to-fine over a pyramid (2x2 average pooling); at each level loopy
min-sum belief propagation on the 4-connected grid, each node's labels are the
(2 window + 1)^2 flows in a square window around its centre (zero at the coarsest level, the
upsampled coarse flow, times 2, at finer levels). Because the pairwise cost is separable in u
and v, a message is a min-convolution along v followed by one along u (the role of SIFT Flow's
dual layer: O(L) instead of O(L^2) per message), each a 1-D truncated-L1 distance transform
(forward/backward passes, Felzenszwalb & Huttenlocher) evaluated at the shift between the two
nodes' window centres. Schedules: 'parallel' (synchronous updates of all messages) or
'sequential' (per iteration four directional sweeps, right, left, down, up, each vectorised
along the orthogonal axis: information crosses the grid in one sweep).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import SopcorrError
from ..geometry import DenseCorrespondence, FeatureGrid

__all__ = ["siftflow", "siftflow_correspondence", "SiftFlowResult", "flow_energy", "data_cost",
           "DEFAULTS"]

#: default parameters (units: the data term above; flows in grid cells); equal to the schema's
#: ``flow.siftflow_*`` defaults (tested). Config values reach the optimiser through
#: :class:`sopcorr.matchers.siftflow.SiftFlowParams`.
DEFAULTS = dict(levels=3, window=4, fine_window=None, iterations=10, alpha=0.01, d=0.1,
                eta=0.001, data_trunc=0.8, schedule="parallel")


@dataclass
class SiftFlowResult:
    """What :func:`siftflow_correspondence` returns: the correspondence, the integer flow
    (H, W, 2) int64 (dx, dy) in cells, and its energy at the finest level."""

    correspondence: DenseCorrespondence
    flow: np.ndarray
    energy: float


# directions messages travel in: (dy, dx); OPP[k] is the reverse direction
_DIRS = ((0, 1), (0, -1), (1, 0), (-1, 0))
_OPP = (1, 0, 3, 2)


# --------------------------------------------------------------------------- data term
def data_cost(desc_src: np.ndarray, desc_tgt: np.ndarray, centre: np.ndarray, window: int,
              data_trunc: float, valid_src: np.ndarray | None = None,
              valid_tgt: np.ndarray | None = None) -> np.ndarray:
    """Truncated, scaled L1 data cost of every label of every node.

    desc_src (H, W, C), desc_tgt (Ht, Wt, C); centre (H, W, 2) int window centres (dx, dy);
    window r. Returns (H, W, K, K) float32, K = 2r+1, axes (.., u offset, v offset): the cost
    of flow centre + (a - r, b - r)."""
    h, w, c = desc_src.shape
    ht, wt = desc_tgt.shape[:2]
    k = 2 * window + 1
    src = desc_src.reshape(h * w, c).astype(np.float32, copy=False)
    tgt = desc_tgt.reshape(ht * wt, c).astype(np.float32, copy=False)
    vt = np.ones(ht * wt, bool) if valid_tgt is None else np.asarray(valid_tgt, bool).reshape(-1)
    rows, cols = np.mgrid[0:h, 0:w]
    base_r = (rows + centre[..., 1]).reshape(-1)
    base_c = (cols + centre[..., 0]).reshape(-1)
    scale = 1.0 / math.sqrt(c)
    out = np.empty((h * w, k, k), np.float32)
    for a in range(k):
        tc = base_c + (a - window)
        okc = (tc >= 0) & (tc < wt)
        for b in range(k):
            tr = base_r + (b - window)
            ok = okc & (tr >= 0) & (tr < ht)
            flat = np.clip(tr, 0, ht - 1) * wt + np.clip(tc, 0, wt - 1)
            ok &= vt[flat]
            dist = np.abs(src - tgt[flat]).sum(1) * scale
            out[:, a, b] = np.where(ok, np.minimum(dist, data_trunc), data_trunc)
    if valid_src is not None:
        out[~np.asarray(valid_src, bool).reshape(-1)] = 0.0
    return out.reshape(h, w, k, k)


def _unary(desc_src, desc_tgt, centre, window, data_trunc, eta, valid_src, valid_tgt):
    """Data cost + small-displacement term for every label: (H, W, K, K) float32."""
    dc = data_cost(desc_src, desc_tgt, centre, window, data_trunc, valid_src, valid_tgt)
    offs = np.arange(-window, window + 1)
    u = centre[..., 0][..., None, None] + offs[:, None]
    v = centre[..., 1][..., None, None] + offs[None, :]
    return dc + np.float32(eta) * (np.abs(u) + np.abs(v)).astype(np.float32)


# --------------------------------------------------------------------------- min-convolution
def _dt_l1(x: np.ndarray, alpha: float, axis: int) -> np.ndarray:
    """1-D L1 distance transform min_j x[j] + alpha |i - j| along ``axis`` (a copy)."""
    y = np.moveaxis(x.copy(), axis, 0)
    n = y.shape[0]
    for i in range(1, n):
        np.minimum(y[i], y[i - 1] + alpha, out=y[i])
    for i in range(n - 2, -1, -1):
        np.minimum(y[i], y[i + 1] + alpha, out=y[i])
    return np.moveaxis(y, 0, axis)


def _minconv_shift(h: np.ndarray, alpha: float, d: float, shift: np.ndarray | None, axis: int) -> np.ndarray:
    """out[.., i, ..] = min_j h[.., j, ..] + min(alpha |j + shift - i|, d) along ``axis``
    (-1 or -2 of a (..., K, K) array); shift (...) int per leading index or None (zero)."""
    k = h.shape[axis]
    dt = _dt_l1(h, alpha, axis)
    if shift is not None and np.any(shift):
        # evaluate the transform at position i - shift (only where shift != 0); outside the
        # window it grows linearly from the nearest end
        lead = h.shape[:-2]
        sh = np.broadcast_to(shift, lead).reshape(-1)
        nz = np.flatnonzero(sh)
        pos = np.arange(k)[None, :] - sh[nz, None]                   # (M, K)
        idx = np.clip(pos, 0, k - 1)
        extra = (alpha * np.abs(pos - idx)).astype(h.dtype)
        dtf = dt.reshape(-1, k, k).copy()
        sub = dtf[nz]
        if axis in (-1, h.ndim - 1):
            dtf[nz] = np.take_along_axis(sub, np.broadcast_to(idx[:, None, :], sub.shape), axis=2) + extra[:, None, :]
        else:
            dtf[nz] = np.take_along_axis(sub, np.broadcast_to(idx[:, :, None], sub.shape), axis=1) + extra[:, :, None]
        dt = dtf.reshape(h.shape)
    trunc = h.min(axis=axis, keepdims=True) + d
    return np.minimum(dt, trunc)


def _message(h: np.ndarray, alpha: float, d: float, shift_u, shift_v) -> np.ndarray:
    """Min-sum message of the separable truncated-L1 pairwise term, normalised to min 0.

    h (..., K, K) (u, v); shift_u/shift_v (...) int = centre(sender) - centre(receiver)."""
    g = _minconv_shift(h, alpha, d, shift_v, axis=-1)
    m = _minconv_shift(g, alpha, d, shift_u, axis=-2)
    return m - m.min(axis=(-2, -1), keepdims=True)


def _neighbour_shifts(centre: np.ndarray):
    """Per direction k, (H, W) int centre(p) - centre(p + dir_k) for u and v (0 at borders)."""
    h, w = centre.shape[:2]
    su = np.zeros((4, h, w), np.int64)
    sv = np.zeros((4, h, w), np.int64)
    for k, (dy, dx) in enumerate(_DIRS):
        ys = slice(max(0, -dy), h - max(0, dy))
        xs = slice(max(0, -dx), w - max(0, dx))
        yd = slice(ys.start + dy, ys.stop + dy)
        xd = slice(xs.start + dx, xs.stop + dx)
        su[k, ys, xs] = centre[ys, xs, 0] - centre[yd, xd, 0]
        sv[k, ys, xs] = centre[ys, xs, 1] - centre[yd, xd, 1]
    return su, sv


def _deliver(m: np.ndarray, k: int, out: np.ndarray) -> None:
    """Store messages m (H, W, K, K) sent from every p in direction k at out[p + dir_k]."""
    dy, dx = _DIRS[k]
    h, w = m.shape[:2]
    out[...] = 0
    src = m[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    out[max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)] = src


def _level_energy(unary: np.ndarray, centre: np.ndarray, labels: np.ndarray, r: int,
                  alpha: float, d: float) -> float:
    """Energy of a labelling (H, W) flat label index at one level (unary + smoothness)."""
    k = 2 * r + 1
    h, w = labels.shape
    e = float(np.take_along_axis(unary.reshape(h, w, k * k), labels[..., None], 2).sum(dtype=np.float64))
    flow = centre + np.stack([labels // k - r, labels % k - r], axis=-1)
    for ax in (0, 1):
        e += float(np.minimum(alpha * np.abs(np.diff(flow, axis=ax)), d).sum(dtype=np.float64))
    return e


class _Best:
    """Keeps the lowest-energy labelling decoded so far (loopy BP need not decrease it)."""

    def __init__(self, unary, centre, r, alpha, d):
        self.args = (unary, centre, r, alpha, d)
        h, w = unary.shape[:2]
        k = 2 * r + 1
        self.labels = np.full((h, w), (k * k) // 2, np.int64)       # the window centres
        self.energy = _level_energy(unary, centre, self.labels, r, alpha, d)

    def offer(self, belief: np.ndarray) -> None:
        h, w = belief.shape[:2]
        labels = belief.reshape(h, w, -1).argmin(-1)
        unary, centre, r, alpha, d = self.args
        e = _level_energy(unary, centre, labels, r, alpha, d)
        if e < self.energy - 1e-9:
            self.labels, self.energy = labels, e


def _bp_parallel(unary, su, sv, alpha, d, iterations, best: _Best, damping=0.0):
    msgs = np.zeros((4,) + unary.shape, np.float32)   # msgs[k][q]: received travelling along k
    new = np.empty_like(msgs)
    for _ in range(iterations):
        belief = unary + msgs.sum(0)
        hh = belief[None] - msgs[list(_OPP)]           # outgoing from p along k excludes q->p
        m = _message(hh, alpha, d, su, sv)
        for k in range(4):
            _deliver(m[k], k, new[k])
        if damping > 0:
            msgs = (1 - damping) * new + damping * msgs
        else:
            msgs, new = new, msgs
        best.offer(unary + msgs.sum(0))


def _pair_costs(shift: np.ndarray, k: int, alpha: float, d: float) -> np.ndarray:
    """(..., K, K) float32 C[.., j, i] = min(alpha |j + shift - i|, d) for shift (...) int."""
    j = np.arange(k)
    diff = j[:, None] - j[None, :] + np.asarray(shift)[..., None, None]
    return np.minimum(alpha * np.abs(diff), d).astype(np.float32)


def _message_dense(h: np.ndarray, cu: np.ndarray, cv: np.ndarray) -> np.ndarray:
    """Message by explicit min over labels per axis (fast for small leading sizes).

    h (N, K, K) (u, v); cu, cv (N, K, K) pair costs from :func:`_pair_costs`."""
    g = (h[:, :, :, None] + cv[:, None, :, :]).min(axis=2)        # (N, Ku, Kv')
    m = (g[:, :, None, :] + cu[:, :, :, None]).min(axis=1)        # (N, Ku', Kv')
    return m - m.min(axis=(1, 2), keepdims=True)


def _bp_sequential(unary, su, sv, alpha, d, iterations, best: _Best):
    """Directional sweeps: the message along k from line i is computed from messages that
    reached line i in this same sweep (one line at a time, vectorised along the line)."""
    h, w, k = unary.shape[:3]
    msgs = np.zeros((4,) + unary.shape, np.float32)
    cu = _pair_costs(su, k, alpha, d)      # (4, H, W, K, K)
    cv = _pair_costs(sv, k, alpha, d)
    for _ in range(iterations):
        for kk, (dy, dx) in enumerate(_DIRS):
            opp = _OPP[kk]
            others = [j for j in range(4) if j != opp]
            if dx != 0:
                order = range(0, w - 1) if dx > 0 else range(w - 1, 0, -1)
                for c in order:
                    hh = unary[:, c] + msgs[others[0]][:, c] + msgs[others[1]][:, c] + msgs[others[2]][:, c]
                    msgs[kk][:, c + dx] = _message_dense(hh, cu[kk][:, c], cv[kk][:, c])
            else:
                order = range(0, h - 1) if dy > 0 else range(h - 1, 0, -1)
                for r in order:
                    hh = unary[r] + msgs[others[0]][r] + msgs[others[1]][r] + msgs[others[2]][r]
                    msgs[kk][r + dy] = _message_dense(hh, cu[kk][r], cv[kk][r])
        best.offer(unary + msgs.sum(0))


# --------------------------------------------------------------------------- energy
def flow_energy(desc_src: np.ndarray, desc_tgt: np.ndarray, flow: np.ndarray, alpha: float,
                d: float, eta: float, data_trunc: float, valid_src: np.ndarray | None = None,
                valid_tgt: np.ndarray | None = None) -> float:
    """The energy E(w) of the module docstring for an integer flow (H, W, 2) (dx, dy)."""
    flow = np.asarray(flow).astype(np.int64)
    dc = data_cost(desc_src, desc_tgt, flow, 0, data_trunc, valid_src, valid_tgt)[..., 0, 0]
    e = float(dc.sum(dtype=np.float64)) + eta * float(np.abs(flow).sum())
    for ax in (0, 1):
        diff = np.abs(np.diff(flow, axis=ax)).astype(np.float64)
        e += float(np.minimum(alpha * diff, d).sum())
    return e


# --------------------------------------------------------------------------- pyramid
def _downsample(x: np.ndarray) -> np.ndarray:
    """2x2 mean pooling of (H, W, ...) with edge replication for odd sizes -> (ceil(H/2), ceil(W/2), ...)."""
    h, w = x.shape[:2]
    ph, pw = h % 2, w % 2
    if ph or pw:
        x = np.pad(x, [(0, ph), (0, pw)] + [(0, 0)] * (x.ndim - 2), mode="edge")
    x = x.astype(np.float32, copy=False)
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def _pyramid(desc, valid, levels):
    descs, valids = [np.asarray(desc, np.float32)], [valid]
    for _ in range(levels - 1):
        if min(descs[-1].shape[:2]) < 2:
            break
        descs.append(_downsample(descs[-1]))
        valids.append(None if valid is None else _downsample(valids[-1].astype(np.float32)) >= 0.5)
    return descs, valids


# --------------------------------------------------------------------------- public API
def siftflow(desc_src: np.ndarray, desc_tgt: np.ndarray, levels: int = DEFAULTS["levels"],
             window: int = DEFAULTS["window"], iterations: int = DEFAULTS["iterations"],
             alpha: float = DEFAULTS["alpha"], d: float = DEFAULTS["d"], eta: float = DEFAULTS["eta"],
             data_trunc: float = DEFAULTS["data_trunc"], valid_src: np.ndarray | None = None,
             valid_tgt: np.ndarray | None = None, fine_window: int | None = DEFAULTS["fine_window"],
             schedule: str = DEFAULTS["schedule"], init: np.ndarray | None = None,
             damping: float = 0.0) -> tuple[np.ndarray, float]:
    """SIFT-flow-style optimisation of a dense integer flow from ``desc_src`` to ``desc_tgt``.

    desc_src (H, W, C), desc_tgt (Ht, Wt, C): descriptor grids (any dense descriptor, e.g.
    dense SIFT or CNN features; L2-normalised descriptors suit the default parameters);
    levels: pyramid levels (1 = no pyramid); window: search radius r (cells) at the coarsest
    level, (2r+1)^2 labels per cell; fine_window: search radius at the finer levels around the
    upsampled flow (default: ``window``); iterations: BP iterations per level; alpha, d: the
    truncated-L1 smoothness min(alpha |du|, d) (per flow component); eta: small-displacement
    weight; data_trunc: truncation of the scaled L1 data term; valid_src (H, W), valid_tgt
    (Ht, Wt) bool masks; schedule: 'sequential' or 'parallel' message passing; init: optional
    (H, W, 2) int initial flow (window centres at the finest level, used with levels=1);
    damping: parallel schedule only, 0 <= damping < 1.

    Returns (flow (H, W, 2) int64 (dx, dy) in cells: source cell (r, c) matches target cell
    (r + dy, c + dx); energy: E(flow) at the finest level)."""
    desc_src = np.asarray(desc_src, np.float32)
    desc_tgt = np.asarray(desc_tgt, np.float32)
    if desc_src.ndim != 3 or desc_tgt.ndim != 3 or desc_src.shape[2] != desc_tgt.shape[2]:
        raise SopcorrError(f"siftflow: descriptors must be (H, W, C) with equal C, got "
                           f"{desc_src.shape} and {desc_tgt.shape}")
    if levels < 1 or window < 0 or iterations < 1:
        raise SopcorrError(f"siftflow: need levels >= 1, window >= 0, iterations >= 1 "
                           f"(got {levels}, {window}, {iterations})")
    if schedule not in ("sequential", "parallel"):
        raise SopcorrError(f"siftflow: schedule must be 'sequential' or 'parallel', got {schedule!r}")
    fine_window = window if fine_window is None else fine_window
    vs = None if valid_src is None else np.asarray(valid_src, bool)
    vt = None if valid_tgt is None else np.asarray(valid_tgt, bool)
    ps, pvs = _pyramid(desc_src, vs, levels)
    pt, pvt = _pyramid(desc_tgt, vt, levels)
    nlev = min(len(ps), len(pt))
    flow = None
    for lev in range(nlev - 1, -1, -1):
        s, t = ps[lev], pt[lev]
        h, w = s.shape[:2]
        if flow is None:
            r = window
            if init is not None and lev == 0:
                centre = np.asarray(init, np.int64).reshape(h, w, 2)
            else:
                centre = np.zeros((h, w, 2), np.int64)
        else:
            r = fine_window
            ys = np.minimum(np.arange(h) // 2, flow.shape[0] - 1)
            xs = np.minimum(np.arange(w) // 2, flow.shape[1] - 1)
            centre = 2 * flow[ys][:, xs]
        unary = _unary(s, t, centre, r, data_trunc, eta, pvs[lev], pvt[lev])
        su, sv = _neighbour_shifts(centre)
        best = _Best(unary, centre, r, alpha, d)
        if schedule == "parallel":
            _bp_parallel(unary, su, sv, alpha, d, iterations, best, damping)
        else:
            _bp_sequential(unary, su, sv, alpha, d, iterations, best)
        k = 2 * r + 1
        flow = centre + np.stack([best.labels // k - r, best.labels % k - r], axis=-1)
    energy = flow_energy(desc_src, desc_tgt, flow, alpha, d, eta, data_trunc, vs, vt)
    return flow.astype(np.int64), energy


def siftflow_correspondence(desc_src: np.ndarray, desc_tgt: np.ndarray, grid_src: FeatureGrid,
                            grid_tgt: FeatureGrid, valid_src: np.ndarray | None = None,
                            valid_tgt: np.ndarray | None = None, **params) -> SiftFlowResult:
    """:func:`siftflow` as a DenseCorrespondence on the source grid (with its flow and energy).

    desc_src (Hs, Ws, C) / desc_tgt (Ht, Wt, C) sampled on grid_src / grid_tgt (same shapes);
    valid_* default to the grids' valid masks; ``params`` go to :func:`siftflow`.
    target_xy: target image coordinates of the matched target cell centres; score: cosine
    similarity of the matched descriptors; valid: valid source cell whose match lies inside
    the target grid on a valid target cell. Returns a :class:`SiftFlowResult`."""
    desc_src = np.asarray(desc_src, np.float32)
    desc_tgt = np.asarray(desc_tgt, np.float32)
    hs, ws = desc_src.shape[:2]
    ht, wt = desc_tgt.shape[:2]
    if tuple(grid_src.shape) != (hs, ws) or tuple(grid_tgt.shape) != (ht, wt):
        raise SopcorrError(f"siftflow_correspondence: descriptor grids {(hs, ws)}/{(ht, wt)} do not "
                           f"match the FeatureGrids {grid_src.shape}/{grid_tgt.shape}")
    vs = grid_src.valid_mask() if valid_src is None else np.asarray(valid_src, bool)
    vt = grid_tgt.valid_mask() if valid_tgt is None else np.asarray(valid_tgt, bool)
    flow, energy = siftflow(desc_src, desc_tgt, valid_src=vs, valid_tgt=vt, **params)
    rows, cols = np.mgrid[0:hs, 0:ws]
    tc = cols + flow[..., 0]
    tr = rows + flow[..., 1]
    inb = (tc >= 0) & (tc < wt) & (tr >= 0) & (tr < ht)
    tcc, trc = np.clip(tc, 0, wt - 1), np.clip(tr, 0, ht - 1)
    a = desc_src / np.maximum(np.linalg.norm(desc_src, axis=-1, keepdims=True), 1e-12)
    b = desc_tgt / np.maximum(np.linalg.norm(desc_tgt, axis=-1, keepdims=True), 1e-12)
    score = (a * b[trc, tcc]).sum(-1)
    valid = vs & inb & vt[trc, tcc]
    target_xy = grid_tgt.cell_to_image(np.stack([tc, tr], -1).astype(np.float64)).astype(np.float32)
    corr = DenseCorrespondence(target_xy=target_xy, score=score.astype(np.float32), valid=valid,
                               grid=grid_src)
    return SiftFlowResult(corr, flow, float(energy))
