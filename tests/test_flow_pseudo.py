"""sopcorr.flow.pseudo: pair sampling, pseudo flows from a feature store, the flow store and
the upsampling convention."""
import numpy as np
import pytest

from sopcorr.errors import DatasetError, SopcorrError
from sopcorr.features.store import write_feature_store
from sopcorr.flow.pseudo import (FlowStore, category_seed, pseudo_flows, sample_pairs,
                                 upsample_to_input, write_flow_store)
from sopcorr.geometry import DenseCorrespondence, FeatureGrid, Letterbox
from sopcorr.matchers.base import Frame
from sopcorr.matchers.pseudo import PseudoGTParams, build_pseudo_gt
from sopcorr.matchers.siftflow import SiftFlowParams


def test_sample_pairs_deterministic_distinct_ordered():
    a = sample_pairs(10, 30, category_seed(0, "bird"))
    assert a == sample_pairs(10, 30, category_seed(0, "bird"))
    assert a != sample_pairs(10, 30, category_seed(0, "car"))
    assert len(a) == 30 == len(set(a))
    assert all(i != j and 0 <= i < 10 and 0 <= j < 10 for i, j in a)
    assert a == sorted(a)
    full = sample_pairs(4, 100, 1)
    assert sorted(full) == [(i, j) for i in range(4) for j in range(4) if i != j]
    sub = sample_pairs(10, 100, 2, ids=[1, 3, 7])
    assert len(sub) == 6 and {i for p in sub for i in p} == {1, 3, 7}
    assert sample_pairs(1, 5, 0) == []
    with pytest.raises(SopcorrError):
        sample_pairs(3, 2, 0, ids=[0, 5])


def _store(tmp_path, n=3, size=64, stride=8, c=16, seed=0):
    """Image k's features are a window of one big random map shifted by k cells to the right."""
    rng = np.random.default_rng(seed)
    g = size // stride
    big = rng.standard_normal((g, g + n, c)).astype(np.float32)
    feats = np.stack([big[:, k:k + g] for k in range(n)])
    valid = np.ones((n, g, g), bool)
    attrs = dict(backbone="toy", layers=["x"], input_size=size, stride=stride,
                 image_ids=[f"cat/{k:03d}" for k in range(n)], image_hw=[[size, size]] * n,
                 normalisation="l2", relu=False)
    path = tmp_path / "emb.zarr"
    write_feature_store(path, feats, valid, None, attrs, dtype=np.float32)
    return path, g


def _frames(path):
    """Frames whose embedding is the store's features (the raw features are not used)."""
    from sopcorr.features.store import FeatureStore

    st = FeatureStore.open(path)
    return [Frame(None, st.valid[i], st.grid(i), embedding=st.load(i), index=i) for i in range(len(st))]


def test_pseudo_flows_recover_shift_and_roundtrip(tmp_path):
    path, g = _store(tmp_path)
    pairs = [(0, 2), (2, 1)]
    m = build_pseudo_gt(PseudoGTParams(variant="paper", mutual=True, min_similarity=0.5, device="cpu"))
    out = pseudo_flows(m, _frames(path), pairs)
    grid = FeatureGrid(Letterbox(64, 64, 64), 8)
    rows, cols = np.mgrid[0:g, 0:g]
    # pair (0, 2): source cell c is target cell c - 2 (defined for c >= 2)
    expect = grid.cell_to_image(np.stack([cols - 2, rows], -1).astype(float))
    sel = cols >= 2
    np.testing.assert_allclose(out["target_xy"][0][sel], expect[sel], atol=1e-4)
    assert out["valid"][0][sel].all()
    assert (out["score"][0][sel] > 0.999).all()
    # cells with no true match are mostly rejected by mutual NN + the similarity threshold
    assert out["valid"][0][~sel].mean() < 0.5
    fs = tmp_path / "flow" / "cat.zarr"
    write_flow_store(fs, pairs, out["target_xy"], out["valid"], out["score"],
                     [f"cat/{k:03d}" for k in range(3)], [[64, 64]] * 3, 64, 8, {"mutual": True})
    st = FlowStore.open(fs)
    assert len(st) == 2 and st.pair_ids[1] == ("cat/002", "cat/001") and st.attrs["mutual"] is True
    c = st.correspondence(0)
    assert isinstance(c, DenseCorrespondence) and c.grid == grid
    np.testing.assert_array_equal(c.target_xy, out["target_xy"][0])
    np.testing.assert_array_equal(c.valid, out["valid"][0])
    flow, valid = st.upsampled(0, 32)
    assert flow.shape == (32, 32, 2) and valid.shape == (32, 32)


def test_write_is_atomic_and_open_checks(tmp_path):
    fs = tmp_path / "bad.zarr"
    with pytest.raises(ValueError):
        write_flow_store(fs, [(0, 1)], np.zeros((1, 4, 4, 2)), np.zeros((1, 4, 5), bool),
                         np.zeros((1, 4, 4)), ["a", "b"], [[8, 8]] * 2, 32, 8)
    assert not fs.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(DatasetError, match="not found"):
        FlowStore.open(fs)


def _corr(src_hw, fn, size=64, stride=8):
    grid = FeatureGrid(Letterbox(src_hw[0], src_hw[1], size), stride)
    centres = grid.cell_centers_image()
    return DenseCorrespondence(target_xy=fn(centres).astype(np.float32),
                               score=np.ones(grid.shape, np.float32), valid=grid.valid_mask(), grid=grid)


def test_upsample_convention_scaled_target_is_zero_flow():
    """Target = the source scaled 2x: at any common input size both letterboxes coincide, so
    the flow is zero wherever it is defined (interior: bilinear reproduces the affine map)."""
    corr = _corr((60, 80), lambda p: 2 * (p + 0.5) - 0.5)
    flow, valid = upsample_to_input(corr, 48, (120, 160))
    rh, rw = Letterbox(60, 80, 48).resized_hw
    assert valid[:rh - 4, :rw - 4].all() and not valid[rh + 1:].any()
    np.testing.assert_allclose(flow[3:rh - 4, 3:rw - 4], 0, atol=1e-4)


def test_upsample_convention_translation():
    """Target = the source translated by (10, 5) image px: flow = (10, 5) * S / max(h, w)."""
    corr = _corr((80, 80), lambda p: p + np.array([10.0, 5.0]))
    s = 40
    flow, valid = upsample_to_input(corr, s, (80, 80))
    inner = (slice(3, s - 3), slice(3, s - 3))
    np.testing.assert_allclose(flow[inner][..., 0], 10 * s / 80, atol=1e-4)
    np.testing.assert_allclose(flow[inner][..., 1], 5 * s / 80, atol=1e-4)
    # a point p of the source input lands where the target letterbox puts p's match
    lb = Letterbox(80, 80, s)
    x, y = 17, 22
    tgt_img = lb.input_to_image(np.array([x, y], float)) + [10, 5]
    np.testing.assert_allclose(np.array([x, y]) + flow[y, x], lb.image_to_input(tgt_img), atol=1e-4)


def test_upsample_invalid_cells_excluded():
    corr = _corr((64, 64), lambda p: p)
    corr.valid[:, :4] = False
    corr.target_xy[:, :4] = np.nan
    flow, valid = upsample_to_input(corr, 64, (64, 64))
    assert np.isfinite(flow).all()
    assert not valid[:, :24].any() and valid[:, 40:60].all()
    np.testing.assert_allclose(flow[valid], 0, atol=1e-4)


def test_siftflow_method_with_forward_backward_check(tmp_path):
    path, g = _store(tmp_path)
    m = build_pseudo_gt(PseudoGTParams(variant="paper", method="siftflow", mutual=True,
                                       siftflow=SiftFlowParams(levels=2, window=3)))
    out = pseudo_flows(m, _frames(path), [(0, 2)])
    grid = FeatureGrid(Letterbox(64, 64, 64), 8)
    rows, cols = np.mgrid[0:g, 0:g]
    expect = grid.cell_to_image(np.stack([cols - 2, rows], -1).astype(float))
    v = out["valid"][0]
    assert v[:, 2:].mean() > 0.9 and not v[:, :2].any()
    np.testing.assert_allclose(out["target_xy"][0][v], expect[v], atol=1e-4)
    with pytest.raises(SopcorrError, match="bad pair"):
        pseudo_flows(m, _frames(path), [(0, 0)])
