"""sopcorr.flow.cycle: the cycle confirmation of the pseudo ground truth (issue 23, item 2):
composition and confirmation counts on synthetic correspondences with known answers, a slow
per-cell reference, the hub draw, the leg cache's matcher calls, and the flow store with and
without confirmations."""
import hashlib
from collections import Counter

import numpy as np
import pytest
import yaml

from sopcorr.errors import ConfigError, SopcorrError
from sopcorr.flow.cycle import (HUB_SALT, CycleParams, LegCache, compose, confirmation_counts, cycle_hubs,
                                leg_uses, pair_hubs)
from sopcorr.flow.pseudo import FlowStore, category_seed, pseudo_flows, sample_pairs, write_flow_store
from sopcorr.geometry import DenseCorrespondence, FeatureGrid, Letterbox
from sopcorr.matchers.base import Frame

SIZE, STRIDE = 64, 8            # 8 x 8 grids
G = SIZE // STRIDE


def _grid(h=SIZE, w=SIZE):
    return FeatureGrid(Letterbox(h, w, SIZE), STRIDE)


def _shift(dx, dy=0, src=None, tgt=None, valid=None):
    """Source cell (r, c) -> target cell (r + dy, c + dx) (image pixels of ``tgt``'s grid);
    valid where that cell is on the target grid (and ``valid``, when given)."""
    src, tgt = src or _grid(), tgt or _grid()
    rows, cols = np.mgrid[0:G, 0:G]
    cr = np.stack([cols + dx, rows + dy], -1).astype(float)
    ok = (cr[..., 0] >= 0) & (cr[..., 0] < G) & (cr[..., 1] >= 0) & (cr[..., 1] < G)
    if valid is not None:
        ok &= valid
    return DenseCorrespondence(target_xy=tgt.cell_to_image(cr).astype(np.float32),
                               score=np.ones((G, G), np.float32), valid=ok, grid=src)


def _cols():
    return np.mgrid[0:G, 0:G][1]


# ----------------------------------------------------------------------------- compose
def test_compose_of_shifts_is_their_sum():
    xy, ok = compose(_shift(1), _shift(2))
    ref = _shift(3)
    c = _cols()
    np.testing.assert_array_equal(ok, c + 3 < G)      # A->C valid for c < 7, C->B at c + 1 < 6
    np.testing.assert_allclose(xy[ok], ref.target_xy[ok], atol=1e-4)
    assert (xy[~ok] == 0).all()
    # identity then a shift: the shift; a shift and back: identity where both are valid
    xy, ok = compose(_shift(0), _shift(-2, 1))
    np.testing.assert_array_equal(ok, _shift(-2, 1).valid)
    xy, ok = compose(_shift(2), _shift(-2))
    np.testing.assert_array_equal(ok, c < G - 2)
    np.testing.assert_allclose(xy[ok], _grid().cell_centers_image()[ok], atol=1e-4)


def test_compose_uses_the_nearest_c_cell_and_its_validity():
    ac = _shift(1)
    ac.target_xy = ac.target_xy + np.float32(0.4 * STRIDE)        # 0.4 cells off: same nearest cell
    cb = _shift(1, valid=_cols() != 4)                           # C cell 4 not valid
    xy, ok = compose(ac, cb)
    c = _cols()
    np.testing.assert_array_equal(ok, (c + 2 < G) & (c != 3))     # A cell 3 lands in C cell 4
    np.testing.assert_allclose(xy[ok], _shift(2).target_xy[ok], atol=1e-4)
    ac.target_xy[0, 0] = np.nan                                  # a NaN target is never valid
    ac.valid[1, 1] = False
    _, ok2 = compose(ac, cb)
    assert not ok2[0, 0] and not ok2[1, 1] and ok2[2, 2]


# ----------------------------------------------------------------------------- counts
def test_confirmation_counts_known_answers():
    ab = _shift(2)
    c = _cols()
    legs = [(_shift(1), _shift(1)),     # consistent: confirms where both legs are valid (c < 6)
            (_shift(0), _shift(2)),     # consistent: confirms where C->B is valid (c < 6)
            (_shift(1), _shift(3)),     # inconsistent by 2 cells > 1.5: never
            (_shift(3), _shift(-1))]    # consistent, but A->C valid only for c < 5
    cnt = confirmation_counts(ab, legs, 1.5, _grid())
    assert cnt.dtype == np.uint8 and cnt.shape == (G, G)
    expect = 2 * (c < 6) + (c < 5)
    np.testing.assert_array_equal(cnt, expect)
    assert (confirmation_counts(ab, [legs[2]], 1.5, _grid()) == 0).all()
    assert (confirmation_counts(ab, [], 1.5, _grid()) == 0).all()
    # one cell off: within 1.5, not within 0.5
    off = [(_shift(1), _shift(2))]
    assert (confirmation_counts(ab, off, 1.5, _grid())[c < 5] == 1).all()
    assert (confirmation_counts(ab, off, 0.5, _grid()) == 0).all()


def test_tolerance_is_in_cells_of_the_target_grid():
    """B is 128 x 128 letterboxed at 64: its cells are 16 image pixels, A's 8. A composed
    match 20 B pixels off is 1.25 B cells (confirmed at 1.5), 2.5 A cells."""
    big = _grid(128, 128)
    ab = _shift(1, tgt=big)
    cb = _shift(1, tgt=big)
    cb.target_xy = cb.target_xy + np.float32([20.0, 0.0])
    legs = [(_shift(0), cb)]
    c = _cols()
    np.testing.assert_array_equal(confirmation_counts(ab, legs, 1.5, big), (c < G - 1).astype(np.uint8))
    assert (confirmation_counts(ab, legs, 1.2, big) == 0).all()


def _loop_counts(ab, legs, tol, tgt_grid):
    """The definition, one cell and one leg at a time (DenseCorrespondence.transfer, nearest)."""
    h, w = ab.valid.shape
    out = np.zeros((h, w), np.uint8)
    for r in range(h):
        for c in range(w):
            direct = ab.target_xy[r, c].astype(float)
            if not np.isfinite(direct).all():
                continue
            for ac, cb in legs:
                if not ac.valid[r, c] or not np.isfinite(ac.target_xy[r, c]).all():
                    continue
                cc, rc = np.rint(cb.grid.image_to_cell(ac.target_xy[r, c].astype(float))).astype(int)
                cc, rc = min(max(cc, 0), cb.valid.shape[1] - 1), min(max(rc, 0), cb.valid.shape[0] - 1)
                if not cb.valid[rc, cc]:
                    continue
                xy, _ = cb.transfer(ac.target_xy[r, c][None].astype(float), mode="nearest")
                d = np.hypot(*(tgt_grid.image_to_cell(xy[0]) - tgt_grid.image_to_cell(direct)))
                out[r, c] += bool(d <= tol)
    return out


def test_confirmation_counts_equal_a_slow_loop():
    rng = np.random.default_rng(3)
    ga, gb = _grid(64, 48), _grid(50, 70)
    gcs = [_grid(80, 64), _grid(30, 60), _grid(64, 64)]

    def rand(src, tgt, near=None):
        hw = np.array([tgt.letterbox.width, tgt.letterbox.height], float)
        xy = rng.uniform(-2, hw + 2, (G, G, 2)) if near is None else near + rng.normal(0, 6, (G, G, 2))
        xy[rng.random((G, G)) < 0.05] = np.nan
        return DenseCorrespondence(target_xy=xy.astype(np.float32), score=np.ones((G, G), np.float32),
                                   valid=rng.random((G, G)) < 0.7, grid=src)

    ab = rand(ga, gb)
    legs = []
    for gc in gcs:
        ac = rand(ga, gc)
        legs.append((ac, rand(gc, gb)))          # random: few confirmations
        # a leg whose C -> B is the direct match moved a little: many confirmations, and the
        # distances straddle the tolerances
        cr = np.clip(np.rint(gc.image_to_cell(np.nan_to_num(ac.target_xy.astype(float)))), 0, G - 1).astype(int)
        near = np.full((G, G, 2), np.nan)
        near[cr[..., 1], cr[..., 0]] = ab.target_xy
        legs.append((ac, rand(gc, gb, near=near)))
    for tol in (0.5, 1.5, 3.0):
        ref = _loop_counts(ab, legs, tol, gb)
        got = confirmation_counts(ab, legs, tol, gb)
        np.testing.assert_array_equal(got, ref)
    assert ref.max() >= 2 and (ref == 0).any()


# ----------------------------------------------------------------------------- hubs
def test_hubs_deterministic_salted_nested_and_from_the_pool():
    seed = category_seed(0, "bird")
    a = cycle_hubs(40, 4, seed)
    assert a == cycle_hubs(40, 4, seed) and a == sorted(a) and len(set(a)) == 4
    assert a != cycle_hubs(40, 4, category_seed(0, "car"))
    assert set(cycle_hubs(40, 2, seed)) <= set(a) <= set(cycle_hubs(40, 8, seed))   # nested in K
    # salted: not the unsalted draw of the same seed (the one the pairs' generator would give)
    assert a != sorted(int(i) for i in np.random.default_rng(seed).permutation(40)[:4])
    assert HUB_SALT != 0
    pool = [1, 5, 9, 11, 30]
    sub = cycle_hubs(40, 3, seed, ids=pool)
    assert len(sub) == 3 and set(sub) <= set(pool)
    assert cycle_hubs(40, 10, seed, ids=pool) == pool
    assert cycle_hubs(40, 0, seed) == [] and cycle_hubs(0, 3, seed) == []
    assert cycle_hubs(5, 2, 7) == cycle_hubs(5, 2, [7])
    with pytest.raises(SopcorrError):
        cycle_hubs(4, 2, 0, ids=[0, 9])


def test_pair_hubs_never_the_pairs_own_images():
    hubs = cycle_hubs(12, 5, category_seed(1, "car"))
    for i, j in sample_pairs(12, 60, category_seed(1, "car")):
        ph = pair_hubs(i, j, hubs)
        assert i not in ph and j not in ph and set(ph) == set(hubs) - {i, j}
    uses = leg_uses([(0, 1), (2, 0)], [0, 3], direct=False)
    assert uses == Counter({(0, 3): 1, (3, 1): 1, (2, 3): 1, (3, 0): 1})


# ----------------------------------------------------------------------------- pseudo_flows
def _frames(n):
    return [Frame(None, np.ones((G, G), bool), _grid(), index=k) for k in range(n)]


class ShiftMatcher:
    """Image k is a window of one scene shifted by k cells: i -> j is a shift of j - i cells
    (valid where it stays on the grid). ``calls`` counts each ordered pair; ``bad``: a target
    whose matches are all 3 cells off, and valid (an inconsistent image)."""

    def __init__(self, bad=None):
        self.calls = Counter()
        self.bad = bad

    def correspondence(self, src, tgt):
        assert src.index != tgt.index
        self.calls[(src.index, tgt.index)] += 1
        # the bad image: valid matches (on its grid), all 3 cells right of the true ones
        return _shift(tgt.index - src.index + (3 if tgt.index == self.bad else 0))


def test_leg_cache_computes_each_ordered_pair_once_and_counts_are_known():
    n = 6
    hubs = [2, 4]
    # (0, 2) and (2, 5) are direct pairs and legs of other pairs; (2, 4) has hub 2 as its source
    pairs = [(0, 1), (0, 2), (2, 5), (3, 1), (2, 4), (5, 0)]
    m = ShiftMatcher()
    stats = {}
    out = pseudo_flows(m, _frames(n), pairs, hubs=hubs, cycle_tolerance=1.5, stats=stats)
    needed = set(pairs) | set(leg_uses(pairs, hubs, direct=False))
    assert set(m.calls) == needed and set(m.calls.values()) == {1}
    assert stats["matcher_calls"] == len(needed) == sum(m.calls.values())
    assert stats["leg_calls"] == len(needed - set(pairs)) and stats["pairs"] == len(pairs)
    assert stats["leg_calls"] <= 2 * len(hubs) * (n - 1)
    assert stats["hubs"] == hubs and stats["leg_seconds"] >= 0
    c = _cols()
    for k, (i, j) in enumerate(pairs):
        expect = sum(((c + h - i >= 0) & (c + h - i < G) & (c + j - i >= 0) & (c + j - i < G)).astype(np.uint8)
                     for h in pair_hubs(i, j, hubs))
        np.testing.assert_array_equal(out["confirmations"][k], expect, err_msg=str((i, j)))
    # the direct flows are exactly those of no confirmation
    plain = pseudo_flows(ShiftMatcher(), _frames(n), pairs)
    assert "confirmations" not in plain
    for key in ("target_xy", "valid", "score"):
        assert out[key].tobytes() == plain[key].tobytes()


def test_forward_backward_inner_matches_are_computed_once_per_ordered_pair():
    """The check of (i, j) and that of (j, i) (a direct pair and its reverse, a leg and the leg
    back) share the inner matcher's two correspondences; the flows equal the unshared ones."""
    from sopcorr.matchers.base import ForwardBackward

    n, hubs = 6, [2, 4]
    pairs = [(0, 1), (1, 0), (0, 2), (2, 5), (3, 1), (5, 0)]
    inner = ShiftMatcher()
    stats = {}
    out = pseudo_flows(ForwardBackward(inner, 1.5), _frames(n), pairs, hubs=hubs, cycle_tolerance=1.5, stats=stats)
    fb = set(leg_uses(pairs, hubs))
    assert set(inner.calls) == fb | {(j, i) for i, j in fb} and set(inner.calls.values()) == {1}
    assert stats["inner_computed"] == len(inner.calls) and stats["inner_served"] == 2 * len(fb) - len(inner.calls)
    frames = _frames(n)
    for k, (i, j) in enumerate(pairs):
        ref = ForwardBackward(ShiftMatcher(), 1.5).correspondence(frames[i], frames[j])
        for key in ("target_xy", "valid", "score"):
            assert out[key][k].tobytes() == np.asarray(getattr(ref, key), out[key].dtype).tobytes()
    plain = pseudo_flows(ForwardBackward(ShiftMatcher(), 1.5), _frames(n), pairs, stats=stats)
    assert stats["inner_served"] == 2                      # (0, 1) and (1, 0)
    for key in ("target_xy", "valid", "score"):
        assert out[key].tobytes() == plain[key].tobytes()


def test_an_inconsistent_hub_confirms_nothing():
    """Every match into image 3 is 3 cells off: pairs through hub 3 (A -> 3 -> B) get no
    confirmation from it, while hub 1 still confirms."""
    pairs = [(0, 2), (2, 0)]
    out = pseudo_flows(ShiftMatcher(bad=3), _frames(5), pairs, hubs=[1, 3], cycle_tolerance=1.5)
    c = _cols()
    for k, (i, j) in enumerate(pairs):
        hub1 = (c + 1 - i >= 0) & (c + 1 - i < G) & (c + j - i >= 0) & (c + j - i < G)
        np.testing.assert_array_equal(out["confirmations"][k], hub1.astype(np.uint8))
    out = pseudo_flows(ShiftMatcher(bad=3), _frames(5), pairs, hubs=[3], cycle_tolerance=1.5)
    assert (out["confirmations"] == 0).all()


def test_leg_cache_recomputes_unplanned_uses_and_drops_entries():
    m = ShiftMatcher()
    cache = LegCache(m, _frames(3), Counter({(0, 1): 2}))
    a = cache.get(0, 1)
    assert cache.get(0, 1) is a and cache.calls == 1 and cache.served == 1
    assert cache.store == {} and cache.peak == 1
    cache.get(0, 1)                   # beyond the plan: computed again, not kept
    cache.get(1, 2)
    assert m.calls == Counter({(0, 1): 2, (1, 2): 1}) and cache.store == {}
    cache.put(2, 0, _shift(-2))       # put without a planned use keeps nothing
    assert cache.store == {}


def test_real_pseudo_gt_matcher_confirms_shifted_windows():
    """The paper variant's pseudo ground truth (mutual NN) on windows of one random map: pair
    (0, 2) through hub 1 is confirmed at every source cell whose match exists (c >= 2)."""
    from sopcorr.matchers.pseudo import PseudoGTParams, build_pseudo_gt

    rng = np.random.default_rng(0)
    big = rng.standard_normal((G, G + 3, 16)).astype(np.float32)
    frames = [Frame(None, np.ones((G, G), bool), _grid(), embedding=big[:, k:k + G], index=k) for k in range(3)]
    m = build_pseudo_gt(PseudoGTParams(variant="paper", mutual=True, min_similarity=0.5, device="cpu"))
    out = pseudo_flows(m, frames, [(0, 2)], hubs=[1], cycle_tolerance=1.5)
    c = _cols()
    assert (out["confirmations"][0][c >= 2] == 1).all()
    assert out["valid"][0][c >= 2].all()


# ----------------------------------------------------------------------------- the store
def _sha(path):
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def test_store_roundtrip_and_k0_stores_are_unchanged(tmp_path):
    n = 5
    pairs = [(0, 2), (2, 1), (4, 3)]
    ids = [f"cat/{k:03d}" for k in range(n)]
    plain = pseudo_flows(ShiftMatcher(), _frames(n), pairs)
    hubs = [1, 4]
    cyc = pseudo_flows(ShiftMatcher(), _frames(n), pairs, hubs=hubs, cycle_tolerance=1.5)
    args = (ids, [[SIZE, SIZE]] * n, SIZE, STRIDE, {"mutual": True})
    write_flow_store(tmp_path / "k0.zarr", pairs, plain["target_xy"], plain["valid"], plain["score"], *args)
    write_flow_store(tmp_path / "k0b.zarr", pairs, plain["target_xy"], plain["valid"], plain["score"], *args,
                     confirmations=None)
    write_flow_store(tmp_path / "k2.zarr", pairs, cyc["target_xy"], cyc["valid"], cyc["score"], *args,
                     confirmations=cyc["confirmations"], hubs=hubs, cycle_tolerance=1.5, cycle_images=2)
    k0, k0b, k2 = _sha(tmp_path / "k0.zarr"), _sha(tmp_path / "k0b.zarr"), _sha(tmp_path / "k2.zarr")
    assert k0 == k0b and not any("confirmations" in p for p in k0)
    # the arrays of before are byte-identical in a store with confirmations
    for p, h in k0.items():
        if p != "zarr.json":
            assert k2[p] == h, p
    assert any(p.startswith("confirmations/") for p in k2)
    st0 = FlowStore.open(tmp_path / "k0.zarr")
    assert st0.confirmations is None and st0.cycle_hubs == []
    assert not any(k.startswith("cycle_") for k in st0.attrs)
    st = FlowStore.open(tmp_path / "k2.zarr")
    np.testing.assert_array_equal(st.confirmations[:], cyc["confirmations"])
    assert st.confirmations.dtype == np.uint8
    assert st.cycle_hubs == hubs and st.attrs["cycle_hubs"] == ["cat/001", "cat/004"]
    assert st.attrs["cycle_images"] == 2 and st.attrs["cycle_tolerance"] == 1.5
    np.testing.assert_array_equal(st.correspondence(1).valid, plain["valid"][1])


def test_store_rejects_bad_confirmations(tmp_path):
    z = (np.zeros((1, G, G, 2), np.float32), np.zeros((1, G, G), bool), np.zeros((1, G, G), np.float32))
    args = (["a", "b"], [[SIZE, SIZE]] * 2, SIZE, STRIDE)
    with pytest.raises(ValueError, match="uint8"):
        write_flow_store(tmp_path / "a.zarr", [(0, 1)], *z, *args, confirmations=np.zeros((1, G, G), np.int32),
                         hubs=[0], cycle_tolerance=1.5)
    with pytest.raises(ValueError, match="come with confirmations"):
        write_flow_store(tmp_path / "b.zarr", [(0, 1)], *z, *args, hubs=[0])
    with pytest.raises(ValueError, match="hubs"):
        write_flow_store(tmp_path / "c.zarr", [(0, 1)], *z, *args, confirmations=np.zeros((1, G, G), np.uint8))
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- settings
def test_cycle_params_defaults_equal_the_schema():
    from sopcorr.config import SCHEMA_PATH

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    flow = schema["properties"]["flow"]["properties"]
    for fld, key in CycleParams.SCHEMA.items():
        assert getattr(CycleParams(), fld) == flow[key.split(".")[-1]]["default"], key
    # the tolerance's default is the forward-backward check's
    assert CycleParams().tolerance == flow["geometric"]["properties"]["fb_tolerance"]["default"]
    assert CycleParams.from_config({}) == CycleParams()
    p = CycleParams.from_config({"cycle_images": 4, "cycle_tolerance": 2})
    assert (p.images, p.tolerance) == (4, 2.0)
    for bad in ({"cycle_images": -1}, {"cycle_images": 256}, {"cycle_tolerance": 0}, {"cycle_nope": 1}):
        with pytest.raises(ConfigError):
            CycleParams.from_config(bad)


def test_training_keeps_the_cells_enough_hubs_confirm(tmp_path):
    """flow.cycle_min: the network's teacher keeps a valid cell only when at least that many hubs
    confirm it (known answer on a store written with known counts); a store without
    confirmations is a one-line DatasetError naming it; the config refuses more confirmations
    than hubs."""
    from sopcorr.config import load_config, validate_config
    from sopcorr.errors import ConfigError, DatasetError
    from sopcorr.features.store import FeatureStore, FeatureStoreWriter
    from sopcorr.flow.pseudo import write_flow_store
    from sopcorr.siamese.correlation.data import teacher_from_store

    h, w, n = 4, 4, 3
    attrs = {"input_size": 64, "stride": 16, "image_hw": [[48, 64]] * n, "image_ids": [f"c/{i}" for i in range(n)],
             "backbone": "x", "layers": ["a"], "normalisation": "imagenet", "relu": False}
    with FeatureStoreWriter(tmp_path / "f.zarr", n, (h, w), 2, attrs) as wr:
        for i in range(n):
            wr.write(i, np.ones((h, w, 2), np.float32), np.ones((h, w), bool))
    store = FeatureStore.open(tmp_path / "f.zarr")
    pairs = [(0, 1), (1, 2)]
    txy = np.stack([store.grid(j).cell_centers_image() for _, j in pairs]).astype(np.float32)
    valid = np.ones((2, h, w), bool)
    valid[0, 0, 0] = False
    conf = np.zeros((2, h, w), np.uint8)
    conf[0, 0, :] = 2   # (0, 0) invalid: stays out whatever its count
    conf[0, 1, :] = 1
    conf[1, 2, 3] = 3
    score = np.full((2, h, w), 0.5, np.float32)
    write_flow_store(tmp_path / "c.zarr", pairs, txy, valid, score, store.ids, store.image_hw, store.input_size,
                     store.stride, confirmations=conf, hubs=[2], cycle_tolerance=1.5, cycle_images=1)
    write_flow_store(tmp_path / "plain.zarr", pairs, txy, valid, score, store.ids, store.image_hw, store.input_size,
                     store.stride)
    for m in (0, 1, 2, 3):
        t = teacher_from_store(tmp_path / "c.zarr", store, min_confirmations=m)
        expect = valid & (conf >= m)
        assert np.array_equal(t.weight > 0, expect), m
    assert np.array_equal(teacher_from_store(tmp_path / "plain.zarr", store).weight > 0, valid)
    with pytest.raises(DatasetError, match="plain.zarr: no cycle confirmations"):
        teacher_from_store(tmp_path / "plain.zarr", store, min_confirmations=1)
    base = load_config("config/config.yaml")
    with pytest.raises(ConfigError, match="flow.cycle_min: 2 confirmations need at least as many hubs"):
        validate_config({**base, "flow": {**base["flow"], "cycle_images": 1, "cycle_min": 2}})
