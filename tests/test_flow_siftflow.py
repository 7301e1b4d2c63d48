"""sopcorr.flow.siftflow: BP against brute force on tiny problems, recovery of known flows,
energy comparisons and the DenseCorrespondence wrapper."""
import itertools

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from sopcorr.errors import SopcorrError
from sopcorr.flow.dsift import dense_sift
from sopcorr.flow.siftflow import DEFAULTS, data_cost, flow_energy, siftflow, siftflow_correspondence
from sopcorr.geometry import FeatureGrid, Letterbox

P = dict(alpha=0.3, d=0.6, eta=0.02, data_trunc=1.0)


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _ref_tables(s1, s2, r, alpha, d, eta, data_trunc):
    """Slow independent reference: unary (N, L) and pairwise (L, L) tables, labels (dx, dy)."""
    h, w, c = s1.shape
    labels = [(u, v) for u in range(-r, r + 1) for v in range(-r, r + 1)]
    un = np.zeros((h * w, len(labels)))
    for y, x in itertools.product(range(h), range(w)):
        for li, (u, v) in enumerate(labels):
            ty, tx = y + v, x + u
            if 0 <= ty < s2.shape[0] and 0 <= tx < s2.shape[1]:
                cost = min(np.abs(s1[y, x] - s2[ty, tx]).sum() / np.sqrt(c), data_trunc)
            else:
                cost = data_trunc
            un[y * w + x, li] = cost + eta * (abs(u) + abs(v))
    lab = np.array(labels)
    du = np.abs(lab[:, None, 0] - lab[None, :, 0])
    dv = np.abs(lab[:, None, 1] - lab[None, :, 1])
    pw = np.minimum(alpha * du, d) + np.minimum(alpha * dv, d)
    edges = [(y * w + x, y * w + x + 1) for y in range(h) for x in range(w - 1)]
    edges += [(y * w + x, (y + 1) * w + x) for y in range(h - 1) for x in range(w)]
    return un, pw, edges, lab


def _brute_force(un, pw, edges):
    n, nl = un.shape
    conf = np.array(list(itertools.product(range(nl), repeat=n)), dtype=np.int16)
    e = un[np.arange(n), conf].sum(1)
    for a, b in edges:
        e += pw[conf[:, a], conf[:, b]]
    k = int(np.argmin(e))
    return conf[k], float(e[k])


def _random_problem(rng, h, w, c=8):
    s1 = _unit(np.abs(rng.standard_normal((h, w, c))))
    s2 = _unit(np.abs(rng.standard_normal((h, w, c))))
    return s1, s2


@pytest.mark.parametrize("schedule", ["sequential", "parallel"])
def test_chain_is_exact(schedule):
    """On a chain (a tree) min-sum BP is exact: it must find the brute-force minimum."""
    rng = np.random.default_rng(0)
    for _ in range(3):
        s1, s2 = _random_problem(rng, 1, 5)
        un, pw, edges, lab = _ref_tables(s1, s2, 1, **P)
        _, e_opt = _brute_force(un, pw, edges)
        flow, e = siftflow(s1, s2, levels=1, window=1, iterations=8, schedule=schedule, **P)
        assert e == pytest.approx(e_opt, abs=1e-5)


def test_energy_matches_reference():
    rng = np.random.default_rng(1)
    s1, s2 = _random_problem(rng, 2, 3)
    un, pw, edges, lab = _ref_tables(s1, s2, 1, **P)
    for _ in range(5):
        li = rng.integers(0, len(lab), 6)
        ref = un[np.arange(6), li].sum() + sum(pw[li[a], li[b]] for a, b in edges)
        flow = lab[li].reshape(2, 3, 2)
        assert flow_energy(s1, s2, flow, **P) == pytest.approx(ref, abs=1e-5)


@pytest.mark.parametrize("schedule", ["sequential", "parallel"])
def test_loopy_grid_near_optimum(schedule):
    """On a 2x2 grid (a loop) BP is not guaranteed optimal; it should reach the brute-force
    optimum on most random instances and stay close on the rest."""
    rng = np.random.default_rng(2)
    gaps = []
    for _ in range(10):
        s1, s2 = _random_problem(rng, 2, 2)
        un, pw, edges, _ = _ref_tables(s1, s2, 1, **P)
        _, e_opt = _brute_force(un, pw, edges)
        _, e = siftflow(s1, s2, levels=1, window=1, iterations=20, schedule=schedule, **P)
        assert e >= e_opt - 1e-6
        gaps.append(e - e_opt)
    gaps = np.array(gaps)
    assert (gaps < 1e-5).mean() >= 0.8
    assert gaps.max() < 0.05 * e_opt + 0.1


def _smooth_field(rng, h, w, c=32, sigma=1.5):
    t = gaussian_filter(rng.standard_normal((h, w, c)), (sigma, sigma, 0))
    return _unit(np.abs(t) + 0.05)


@pytest.mark.parametrize("schedule", ["sequential", "parallel"])
def test_recovers_smooth_warp(schedule):
    """s1(p) = s2(p + w(p)) for a smooth integer field w reaching 6 cells: the pyramid + BP
    recovers w wherever p + w(p) lies inside the target."""
    rng = np.random.default_rng(3)
    h = w = 32
    s2 = _smooth_field(rng, h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    fx = np.rint(3 * np.sin(2 * np.pi * yy / h) + 3).astype(int)
    fy = np.rint(2 * np.cos(2 * np.pi * xx / w) - 2).astype(int)
    inb = (yy + fy >= 0) & (yy + fy < h) & (xx + fx >= 0) & (xx + fx < w)
    s1 = s2[np.clip(yy + fy, 0, h - 1), np.clip(xx + fx, 0, w - 1)]
    flow, e = siftflow(s1, s2, levels=3, window=3, iterations=10, schedule=schedule)
    ok = (flow[..., 0] == fx) & (flow[..., 1] == fy)
    assert ok[inb].mean() > 0.97
    params = {k: DEFAULTS[k] for k in ('alpha', 'd', 'eta', 'data_trunc')}
    e_zero = flow_energy(s1, s2, np.zeros_like(flow), **params)
    assert e < e_zero


def test_recovers_image_translation_with_dense_sift():
    """Dense SIFT of an image and of its translated copy (24, 16) px = (3, 2) cells at stride 8."""
    rng = np.random.default_rng(4)
    img = np.clip((gaussian_filter(rng.random((300, 300)), 2) - 0.5) * 2000 + 128, 0, 255).astype(np.uint8)
    a, b = img[16:16 + 128, 24:24 + 128], img[:128, :128]        # a(p) = b(p + (24, 16))
    g = FeatureGrid(Letterbox(128, 128, 128), 8)
    da, db = dense_sift(a, 20, grid=g), dense_sift(b, 20, grid=g)
    # smoothness strong enough to carry the flow into the border cells, whose SIFT windows
    # overlap the image edge
    res = siftflow_correspondence(da, db, g, g, levels=2, window=3, iterations=10, alpha=0.05, d=0.5)
    corr, flow = res.correspondence, res.flow
    assert np.isfinite(res.energy)
    inner = np.zeros((16, 16), bool)
    inner[:13, :12] = True            # p + (3, 2) inside the target, SIFT window inside b
    assert (flow[inner] == [3, 2]).all(axis=-1).mean() > 0.95
    expect = g.cell_to_image(np.stack(np.meshgrid(np.arange(16) + 3, np.arange(16) + 2), -1).astype(float))
    np.testing.assert_allclose(corr.target_xy[inner & (flow == [3, 2]).all(-1)],
                               expect[inner & (flow == [3, 2]).all(-1)], atol=1e-3)
    assert corr.valid[inner].mean() > 0.95


def test_energy_below_nearest_neighbour_flow():
    """BP's flow has lower energy than the zero flow and than the per-cell best data match."""
    rng = np.random.default_rng(5)
    s1 = _smooth_field(rng, 16, 16, sigma=0.8)
    s2 = _unit(s1[::-1] + 0.3 * np.abs(rng.standard_normal(s1.shape)))   # a flip plus noise
    params = dict(alpha=0.1, d=0.5, eta=0.005, data_trunc=1.0)
    flow, e = siftflow(s1, s2, levels=1, window=4, iterations=20, **params)
    # nearest neighbour within the same window
    best_e, nn = np.full((16, 16), np.inf), np.zeros((16, 16, 2), int)
    for u in range(-4, 5):
        for v in range(-4, 5):
            f = np.broadcast_to([u, v], (16, 16, 2))
            c = data_cost(s1, s2, np.asarray(f), 0, 1.0)[..., 0, 0] + 0.005 * (abs(u) + abs(v))
            better = c < best_e
            best_e[better], nn[better] = c[better], (u, v)
    assert e <= flow_energy(s1, s2, nn, **params) + 1e-6
    assert e <= flow_energy(s1, s2, np.zeros_like(nn), **params) + 1e-6


def test_invalid_source_cells_follow_neighbours():
    rng = np.random.default_rng(6)
    s2 = _smooth_field(rng, 16, 16)
    yy, xx = np.mgrid[0:16, 0:16]
    s1 = s2[np.clip(yy + 1, 0, 15), np.clip(xx + 2, 0, 15)]
    vs = np.ones((16, 16), bool)
    vs[5:8, 5:8] = False
    s1 = s1.copy()
    s1[~vs] = _unit(rng.random((9, 32)))                        # garbage where invalid
    flow, _ = siftflow(s1, s2, levels=2, window=3, iterations=10, valid_src=vs)
    assert (flow[5:8, 5:8] == [2, 1]).all()


def test_shifted_messages_match_explicit_min_over_labels():
    """The parallel schedule's messages (labels-first, shifted reads only where the window
    centres differ, the rest as is) against the explicit min over every pair of labels:
    m[i, i'] = min_{j, j'} h[j, j'] + min(a |j + su - i|, d) + min(a |j' + sv - i'|, d) - min."""
    from sopcorr.flow import siftflow as sf

    rng = np.random.default_rng(8)
    k, n, alpha, d = 5, 60, 0.3, 0.7
    h = rng.random((k, k, n)).astype(np.float32)                  # (u, v, message)
    su = rng.integers(-7, 8, n) * (rng.random(n) < 0.5)           # beyond the window too
    sv = rng.integers(-7, 8, n) * (rng.random(n) < 0.5)
    m = sf._message(h, alpha, d, sf._ShiftedReads.build(su, k, alpha),
                    sf._ShiftedReads.build(sv, k, alpha), np.empty((k, n), np.float32))
    j = np.arange(k)
    for c in range(n):
        pu = np.minimum(alpha * np.abs(j[:, None] + su[c] - j[None, :]), d)     # (j, i)
        pv = np.minimum(alpha * np.abs(j[:, None] + sv[c] - j[None, :]), d)
        full = h[:, :, c].astype(np.float64)[:, :, None, None] + pu[:, None, :, None] + pv[None, :, None, :]
        ref = full.min(axis=(0, 1))
        np.testing.assert_allclose(m[:, :, c], ref - ref.min(), atol=1e-5)
    assert sf._ShiftedReads.build(np.zeros(n, int), k, alpha) is None


def test_bad_input_raises():
    with pytest.raises(SopcorrError):
        siftflow(np.zeros((4, 4, 3)), np.zeros((4, 4, 5)))
    with pytest.raises(SopcorrError):
        siftflow(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), schedule="magic")


def test_config_defaults_match_library_defaults():
    """The schema's flow.siftflow_* defaults are the optimiser's DEFAULTS (through the one
    translator, SiftFlowParams)."""
    from sopcorr.config import validate_config
    from sopcorr.matchers.siftflow import SiftFlowParams

    cfg = validate_config({})
    keys = {k: v for k, v in cfg["flow"].items() if k.startswith("siftflow_")}
    assert SiftFlowParams.from_config(keys).optimiser() == DEFAULTS
