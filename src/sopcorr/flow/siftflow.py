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
#: rows (source cell, label) per block of the data cost: bounds the gathered (rows, C) arrays
#: to 0.5 MB each (the fastest on 128- and 304-d descriptors)
_DATA_BLOCK_FLOATS = 1 << 17


def data_cost(desc_src: np.ndarray, desc_tgt: np.ndarray, centre: np.ndarray, window: int,
              data_trunc: float, valid_src: np.ndarray | None = None,
              valid_tgt: np.ndarray | None = None) -> np.ndarray:
    """Truncated, scaled L1 data cost of every label of every node.

    desc_src (H, W, C), desc_tgt (Ht, Wt, C); centre (H, W, 2) int window centres (dx, dy);
    window r. Returns (H, W, K, K) float32, K = 2r+1, axes (.., u offset, v offset): the cost
    of flow centre + (a - r, b - r).

    Only the labels of valid source cells that land on a valid target cell are computed (in
    blocks of (source cell, label) rows); the others cost ``data_trunc`` (0 for a source cell
    that is not valid). Each distance is the sum over C of one contiguous row of
    ``|src - tgt|``, as numpy sums any such row (same order, same float32 result)."""
    h, w, c = desc_src.shape
    ht, wt = desc_tgt.shape[:2]
    k = 2 * window + 1
    src = desc_src.reshape(h * w, c).astype(np.float32, copy=False)
    tgt = desc_tgt.reshape(ht * wt, c).astype(np.float32, copy=False)
    offs = np.arange(-window, window + 1)
    rows, cols = np.mgrid[0:h, 0:w]
    tc = (cols + centre[..., 0]).reshape(-1, 1, 1) + offs[:, None]    # (HW, K, 1) label a
    tr = (rows + centre[..., 1]).reshape(-1, 1, 1) + offs[None, :]    # (HW, 1, K) label b
    ok = (tc >= 0) & (tc < wt) & (tr >= 0) & (tr < ht)                # (HW, K, K)
    if valid_src is not None:
        ok &= np.asarray(valid_src, bool).reshape(-1, 1, 1)
    sel = np.flatnonzero(ok)                                          # (L,) flat (cell, a, b)
    flat = np.broadcast_to(tr * wt + tc, ok.shape).reshape(-1)[sel]   # (L,) target cell
    if valid_tgt is not None:
        keep = np.asarray(valid_tgt, bool).reshape(-1)[flat]
        sel, flat = sel[keep], flat[keep]
    node = sel // (k * k)
    scale = 1.0 / math.sqrt(c)
    out = np.full(h * w * k * k, data_trunc, np.float32)
    block = max(1, _DATA_BLOCK_FLOATS // max(c, 1))
    for i in range(0, len(sel), block):
        diff = src[node[i:i + block]]                                 # (B, C) contiguous rows
        np.subtract(diff, tgt[flat[i:i + block]], out=diff)
        np.abs(diff, out=diff)
        out[sel[i:i + block]] = np.minimum(diff.sum(1) * scale, data_trunc)
    if valid_src is not None:
        out.reshape(h * w, k * k)[~np.asarray(valid_src, bool).reshape(-1)] = 0.0
    return out.reshape(h, w, k, k)


def _unary(desc_src, desc_tgt, centre, window, data_trunc, eta, valid_src, valid_tgt):
    """Data cost + small-displacement term for every label: (H, W, K, K) float32."""
    dc = data_cost(desc_src, desc_tgt, centre, window, data_trunc, valid_src, valid_tgt)
    offs = np.arange(-window, window + 1)
    u = centre[..., 0][..., None, None] + offs[:, None]
    v = centre[..., 1][..., None, None] + offs[None, :]
    return dc + np.float32(eta) * (np.abs(u) + np.abs(v)).astype(np.float32)


# --------------------------------------------------------------------------- min-convolution
# The parallel schedule keeps labels in front: beliefs (K, K, H, W) and messages (K, K, 4, H, W)
# (u label, v label, direction, node), seen as (K, K, M) with M = 4 H W when messages are
# computed. Every step of a distance transform and every minimum over labels is then an
# elementwise operation on slabs of M contiguous values (no reduction along a short axis).
def _dt_l1_slabs(y: np.ndarray, alpha: float, tmp: np.ndarray) -> None:
    """In place: the 1-D L1 distance transform y[i] <- min_j y[j] + alpha |i - j| along axis 0
    of y (K, ...), by a forward and a backward pass; tmp: a scratch array of y[0]'s shape."""
    n = y.shape[0]
    for i in range(1, n):
        np.add(y[i - 1], alpha, out=tmp)
        np.minimum(y[i], tmp, out=y[i])
    for i in range(n - 2, -1, -1):
        np.add(y[i + 1], alpha, out=tmp)
        np.minimum(y[i], tmp, out=y[i])


@dataclass
class _ShiftedReads:
    """How :func:`_minconv` evaluates a distance transform at i - shift[m] instead of i for the
    messages m whose shift is not 0 (outside the window it continues linearly from the nearest
    end): ``y.ravel()[write] = y.ravel()[read] + extra`` on the transform y (K, K, M) laid out
    with the transformed axis first (position, other label, message). read, write (L,) intp,
    extra (L,) float32 alpha * (distance beyond the window's end), L = K K (messages with a
    shift); messages with shift 0 keep the transform as is."""

    read: np.ndarray
    write: np.ndarray
    extra: np.ndarray

    @classmethod
    def build(cls, shift: np.ndarray, k: int, alpha: float) -> "_ShiftedReads | None":
        """shift (M,) int per message (any shape, raveled); None when every shift is 0."""
        shift = np.asarray(shift).reshape(-1)
        nz = np.flatnonzero(shift)
        if nz.size == 0:
            return None
        m = shift.size
        pos = np.arange(k)[:, None] - shift[nz]                        # (K, L/K²) read position
        idx = np.clip(pos, 0, k - 1)
        extra = (alpha * np.abs(pos - idx)).astype(np.float32)
        rest = np.arange(k)[None, :, None] * m + nz                    # (1, K, .) other label, message
        write = np.arange(k)[:, None, None] * (k * m) + rest
        read = idx[:, None, :] * (k * m) + rest
        return cls(read.reshape(-1), write.reshape(-1),
                   np.broadcast_to(extra[:, None, :], write.shape).reshape(-1))


def _minconv(x: np.ndarray, axis: int, alpha: float, d: float, reads: _ShiftedReads | None,
             tmp: np.ndarray) -> np.ndarray:
    """out[.., i, ..] = min_j x[.., j, ..] + min(alpha |j + shift - i|, d) along ``axis``
    (0: u, 1: v) of x (K, K, M) float32 (u, v, message), the shift per message given by
    ``reads`` (None: 0). Returns a new (K, K, M) array (u, v, message), for axis 1 a transposed
    view. tmp: (K, M) scratch.

    The transform runs on a copy with ``axis`` first, so each of its steps is one contiguous
    (K, M) slab."""
    y = np.moveaxis(x, axis, 0).copy()
    _dt_l1_slabs(y, alpha, tmp)
    if reads is not None:
        flat = y.reshape(-1)
        shifted = flat.take(reads.read)
        shifted += reads.extra
        flat[reads.write] = shifted
    y = np.moveaxis(y, 0, axis)
    trunc = np.minimum.reduce(x, axis=axis, keepdims=True)
    trunc += d
    np.minimum(y, trunc, out=y)
    return y


def _message(h: np.ndarray, alpha: float, d: float, reads_u: _ShiftedReads | None,
             reads_v: _ShiftedReads | None, tmp: np.ndarray) -> np.ndarray:
    """Min-sum messages of the separable truncated-L1 pairwise term, normalised to min 0.

    h (K, K, M) (u, v, message) float32: the sender's belief without the receiver's message;
    reads_u/reads_v: the shifts centre(sender) - centre(receiver) (:class:`_ShiftedReads`);
    tmp (K, M) scratch. Returns (K, K, M) float32, C-contiguous."""
    g = _minconv(h, 1, alpha, d, reads_v, tmp)
    m = _minconv(g, 0, alpha, d, reads_u, tmp)
    m -= np.minimum.reduce(m.reshape(-1, m.shape[-1]), axis=0)
    return m


def _edge(k: int, h: int, w: int):
    """Along direction k on an (H, W) grid: (send, recv, none), each a (rows, cols) pair of
    slices: the nodes that send, the nodes that receive (recv = send + dir_k, in the same
    order) and the line of nodes that receive nothing."""
    dy, dx = _DIRS[k]
    send = (slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx)))
    recv = (slice(max(0, dy), h - max(0, -dy)), slice(max(0, dx), w - max(0, -dx)))
    if dy:
        none = (slice(0, 1) if dy > 0 else slice(h - 1, h), slice(None))
    else:
        none = (slice(None), slice(0, 1) if dx > 0 else slice(w - 1, w))
    return send, recv, none


def _neighbour_shifts(centre: np.ndarray):
    """Per direction k, (H, W) int centre(p) - centre(p + dir_k) for u and v (0 at borders)."""
    h, w = centre.shape[:2]
    su = np.zeros((4, h, w), np.int64)
    sv = np.zeros((4, h, w), np.int64)
    for k in range(4):
        send, recv, _ = _edge(k, h, w)
        su[(k,) + send] = centre[send + (0,)] - centre[recv + (0,)]
        sv[(k,) + send] = centre[send + (1,)] - centre[recv + (1,)]
    return su, sv


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
    """Keeps the lowest-energy labelling decoded so far (loopy BP need not decrease it).

    unary (H, W, K, K); labels (H, W) flat label index a K + b. A labelling equal to the one
    offered last is not evaluated again (its energy could not beat the kept one)."""

    def __init__(self, unary, centre, r, alpha, d):
        self.args = (unary, centre, r, alpha, d)
        h, w = unary.shape[:2]
        k = 2 * r + 1
        self.labels = np.full((h, w), (k * k) // 2, np.int64)       # the window centres
        self.energy = _level_energy(unary, centre, self.labels, r, alpha, d)
        self._last = self.labels

    def offer(self, belief: np.ndarray) -> None:
        """belief (H, W, K, K): offers its per-node minimum (the first one on ties)."""
        h, w = belief.shape[:2]
        self.offer_labels(belief.reshape(h, w, -1).argmin(-1))

    def offer_labels(self, labels: np.ndarray) -> None:
        """labels (H, W) int64 flat label indices."""
        if np.array_equal(labels, self._last):
            return
        self._last = labels
        unary, centre, r, alpha, d = self.args
        e = _level_energy(unary, centre, labels, r, alpha, d)
        if e < self.energy - 1e-9:
            self.labels, self.energy = labels, e


def _belief(unary_lm: np.ndarray, msgs: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out (K, K, H, W) = unary_lm (K, K, H, W) + the sum of msgs (K, K, 4, H, W) over the 4
    directions, added in direction order (as ``msgs.sum(axis)`` does)."""
    np.add(msgs[:, :, 0], msgs[:, :, 1], out=out)
    out += msgs[:, :, 2]
    out += msgs[:, :, 3]
    out += unary_lm
    return out


def _bp_parallel(unary, su, sv, alpha, d, iterations, best: _Best, damping=0.0):
    """Synchronous min-sum BP: every node sends all four messages from the previous
    iteration's messages. unary (H, W, K, K) float32; su, sv (4, H, W) int from
    :func:`_neighbour_shifts`. Offers the decoded labelling to ``best`` after each iteration.

    Messages are computed where they arrive: msgs[:, :, j, q] (K, K) is the message q
    receives from q - dir_j, computed from the sender's belief minus what q sent it, and is 0
    where q has no such neighbour."""
    h, w, k = unary.shape[:3]
    unary_lm = np.ascontiguousarray(unary.transpose(2, 3, 0, 1))      # (K, K, H, W)
    msgs = np.zeros((k, k, 4, h, w), np.float32)
    hh = np.zeros_like(msgs)                         # sender's belief less the receiver's message
    edges = [_edge(j, h, w) for j in range(4)]
    recv_su = np.zeros_like(su)                      # shifts of each message, at its receiver
    recv_sv = np.zeros_like(sv)
    for j, (send, recv, _) in enumerate(edges):
        recv_su[(j, *recv)] = su[(j, *send)]
        recv_sv[(j, *recv)] = sv[(j, *send)]
    reads_u = _ShiftedReads.build(recv_su, k, alpha)
    reads_v = _ShiftedReads.build(recv_sv, k, alpha)
    tmp = np.empty((k, 4 * h * w), np.float32)
    belief = _belief(unary_lm, msgs, np.empty((k, k, h, w), np.float32))
    for _ in range(iterations):
        for j, (send, recv, _) in enumerate(edges):
            # the sender p excludes the message it received from its receiver (along OPP[j])
            np.subtract(belief[:, :, send[0], send[1]], msgs[:, :, _OPP[j], send[0], send[1]],
                        out=hh[:, :, j, recv[0], recv[1]])
        m = _message(hh.reshape(k, k, -1), alpha, d, reads_u, reads_v, tmp).reshape(msgs.shape)
        for j, (_, _, none) in enumerate(edges):
            m[:, :, j, none[0], none[1]] = 0
        if damping > 0:
            msgs = (1 - damping) * m + damping * msgs
        else:
            msgs = m
        belief = _belief(unary_lm, msgs, belief)
        best.offer_labels(belief.reshape(k * k, h, w).argmin(0))


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
