"""sopcorr.flow.nn: dense nearest neighbours against a brute-force reference."""
import numpy as np
import pytest

from sopcorr.errors import SopcorrError
from sopcorr.flow.nn import nearest_neighbour
from sopcorr.geometry import FeatureGrid, Letterbox


def _grid(h=64, w=64, size=64, stride=8):
    return FeatureGrid(Letterbox(h, w, size), stride)


def _feats(rng, shape, c=16):
    return rng.standard_normal(shape + (c,)).astype(np.float32)


def _brute(fs, ft, vt, ls=None, lt=None):
    a = fs.reshape(-1, fs.shape[-1]); a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = ft.reshape(-1, ft.shape[-1]); b = b / np.linalg.norm(b, axis=1, keepdims=True)
    sim = a @ b.T
    vt = vt.reshape(-1)
    idx = np.zeros(len(a), int)
    best = np.zeros(len(a))
    for i in range(len(a)):
        allowed = vt.copy()
        if ls is not None:
            same = allowed & (lt.reshape(-1) == ls.reshape(-1)[i])
            if same.any():
                allowed = same
        s = np.where(allowed, sim[i], -np.inf)
        idx[i] = int(np.argmax(s)); best[i] = s[idx[i]]
    return idx, best, sim


def test_matches_bruteforce_with_invalid_targets():
    rng = np.random.default_rng(0)
    g = _grid()
    fs, ft = _feats(rng, (8, 8)), _feats(rng, (8, 8))
    vt = rng.random((8, 8)) > 0.3
    corr = nearest_neighbour(fs, ft, g, g, valid_tgt=vt, chunk=7)
    idx, best, _ = _brute(fs, ft, vt)
    cr = np.stack([idx % 8, idx // 8], -1).reshape(8, 8, 2)
    np.testing.assert_allclose(corr.target_xy, g.cell_to_image(cr), atol=1e-4)
    np.testing.assert_allclose(corr.score.reshape(-1), best, atol=1e-5)
    assert corr.valid.all()


def test_identity_and_shift_recovered():
    """Matching a map with a shifted copy of itself finds the shift wherever it is defined."""
    rng = np.random.default_rng(1)
    big = _feats(rng, (10, 10), 32)
    fs, ft = big[:8, :8], big[1:9, 2:10]          # fs[r, c] == ft[r - 1, c - 2]
    g = _grid()
    corr = nearest_neighbour(fs, ft, g, g)
    rows, cols = np.mgrid[1:8, 2:8]
    expect = g.cell_to_image(np.stack([cols - 2, rows - 1], -1).astype(float))
    np.testing.assert_allclose(corr.target_xy[1:, 2:], expect, atol=1e-4)
    np.testing.assert_allclose(corr.score[1:, 2:], 1.0, atol=1e-5)


def test_mutual_subset_and_consistent():
    rng = np.random.default_rng(2)
    g = _grid()
    fs, ft = _feats(rng, (8, 8)), _feats(rng, (8, 8))
    plain = nearest_neighbour(fs, ft, g, g)
    mut = nearest_neighbour(fs, ft, g, g, mutual=True)
    idx, _, sim = _brute(fs, ft, np.ones((8, 8), bool))
    back = sim.argmax(0)
    expect = back[idx] == np.arange(64)
    np.testing.assert_array_equal(mut.valid.reshape(-1), expect)
    assert mut.valid.sum() < plain.valid.sum()


def test_label_constraint_and_fallback():
    rng = np.random.default_rng(3)
    g = _grid()
    fs, ft = _feats(rng, (8, 8)), _feats(rng, (8, 8))
    ls = rng.integers(0, 4, (8, 8))
    lt = rng.integers(0, 3, (8, 8))               # label 3 absent in the target: fallback
    corr = nearest_neighbour(fs, ft, g, g, labels_src=ls, labels_tgt=lt)
    idx, best, _ = _brute(fs, ft, np.ones((8, 8), bool), ls, lt)
    np.testing.assert_allclose(corr.score.reshape(-1), best, atol=1e-5)
    matched = idx
    constrained = ls.reshape(-1) != 3
    assert (lt.reshape(-1)[matched][constrained] == ls.reshape(-1)[constrained]).all()


def test_invalid_source_and_padding():
    rng = np.random.default_rng(4)
    g = _grid(h=32, w=64)                          # bottom half of the canvas is padding
    fs, ft = _feats(rng, (8, 8)), _feats(rng, (8, 8))
    corr = nearest_neighbour(fs, ft, g, g)
    np.testing.assert_array_equal(corr.valid, g.valid_mask())
    # every match lies on a valid target cell
    cr = g.image_to_cell(corr.target_xy.reshape(-1, 2))
    r, c = np.rint(cr[:, 1]).astype(int), np.rint(cr[:, 0]).astype(int)
    assert g.valid_mask()[r, c].all()


def test_softargmax_is_subcell_and_near_argmax():
    rng = np.random.default_rng(5)
    g = _grid()
    fs, ft = _feats(rng, (8, 8)), _feats(rng, (8, 8))
    a = nearest_neighbour(fs, ft, g, g)
    b = nearest_neighbour(fs, ft, g, g, refine="softargmax", temperature=0.05)
    d = np.abs(g.image_to_cell(a.target_xy) - g.image_to_cell(b.target_xy))
    assert d.max() <= 1.0 + 1e-6 and d.max() > 0


def test_bad_shapes_raise():
    rng = np.random.default_rng(6)
    g = _grid()
    with pytest.raises(SopcorrError):
        nearest_neighbour(_feats(rng, (8, 8), 4), _feats(rng, (8, 8), 5), g, g)
    with pytest.raises(SopcorrError):
        nearest_neighbour(_feats(rng, (7, 8)), _feats(rng, (8, 8)), g, g)
