"""The loop (Algorithm 1) on tiny synthetic feature grids: outputs, determinism, resuming."""
import numpy as np
import pytest

from sopcorr.errors import SopcorrError
from sopcorr.manifold import graphcut as gc
from sopcorr.manifold.refine import (ManifoldParams, contact_matrix, pairwise_matrix, part_medians,
                                     run_manifold)


def _toy(seed=0, N=12, H=12, W=12, C=24, noise=0.9):
    """Images with 4 quadrant parts + background; features = part prototype + noise, L2-normalised."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(5, C))
    gt = np.zeros((N, H, W), int)
    feats = np.zeros((N, H, W, C), np.float32)
    yy, xx = np.mgrid[:H, :W]
    for i in range(N):
        cy, cx = rng.integers(4, H - 4, 2)
        g = 1 + (yy > cy) + 2 * (xx > cx)
        g[(abs(yy - cy) > 4) | (abs(xx - cx) > 4)] = 0
        gt[i] = g
        feats[i] = protos[g] + noise * rng.normal(size=(H, W, C))
    feats /= np.linalg.norm(feats, axis=-1, keepdims=True)
    valid = np.ones((N, H, W), bool)
    valid[:, :, -2:] = False  # letterbox padding
    return feats.astype(np.float16), valid, gt


PARAMS = dict(n_parts=5, n_components=6, subclasses=2, landmarks=100, exact_max_samples=500,
              fit_samples=800, precluster=40, max_iter=3, init_dims=8)


def test_loop_rows_labels_and_quality():
    feats, valid, gt = _toy()
    r = run_manifold(feats, valid, ManifoldParams(**PARAMS), gt_parts=gt)
    assert r.labels.shape == valid.shape and r.labels.dtype == np.int16
    assert np.all(r.labels[~valid] == -1) and np.all((r.labels[valid] >= 0) & (r.labels[valid] < 5))
    assert [row["iteration"] for row in r.rows] == list(range(len(r.rows)))
    assert 2 <= len(r.rows) <= 4
    for row in r.rows:
        assert 0 <= row["changed"] <= 1 and row["energy"] <= row["energy_before_graphcut"] + 1e-6
        assert 0 < row["largest_share"] <= 1 and np.isfinite(row["ari"])
    assert r.rows[-1]["ari"] > 0.5  # parts are recoverable in this toy
    assert r.embedding.kfd is not None and r.first_embedding.kfd is not None
    assert r.embedding.dim == 6


def test_deterministic_given_seed():
    feats, valid, gt = _toy(1)
    a = run_manifold(feats, valid, ManifoldParams(**PARAMS, seed=7))
    b = run_manifold(feats, valid, ManifoldParams(**PARAMS, seed=7))
    assert np.array_equal(a.labels, b.labels)
    assert [r["energy"] for r in a.rows] == [r["energy"] for r in b.rows]


def test_resume_after_a_kill_gives_the_same_result(tmp_path):
    feats, valid, gt = _toy(2)
    p = ManifoldParams(**{**PARAMS, "tol": 0.0})
    full = run_manifold(feats, valid, p, gt_parts=gt)
    state = tmp_path / "state"
    part = run_manifold(feats, valid, p, gt_parts=gt, state_dir=state, max_iterations_this_call=2)
    assert len(part.rows) == 2 and len(list(state.glob("iter_*.npz"))) == 2
    resumed = run_manifold(feats, valid, p, gt_parts=gt, state_dir=state)
    assert np.array_equal(resumed.labels, full.labels)
    assert [r["energy"] for r in resumed.rows] == pytest.approx([r["energy"] for r in full.rows])
    # other parameters: the checkpoint is ignored, not reused
    other = run_manifold(feats, valid, ManifoldParams(**{**PARAMS, "n_parts": 4}), state_dir=state)
    assert other.rows[0]["iteration"] == 0 and len(other.rows) >= 2


def test_improved_knobs_run_and_change_behaviour():
    feats, valid, gt = _toy(3)
    cfg = {"variant": "improved", **PARAMS,
           "improved": {"posterior_temperature": 3.0, "uniform_prior": True, "min_part_fraction": 0.05,
                        "anchor_weight": 0.5, "pairwise": "contact", "subclasses": 3,
                        "n_components": 8, "raw_weight": 0.5}}
    p = ManifoldParams.from_config(cfg, seed=0, category="toy")
    assert p.posterior_temperature == 3.0 and p.pairwise == "contact" and p.raw_weight == 0.5
    assert p.n_components == 8
    paper = ManifoldParams.from_config({**cfg, "variant": "paper"}, seed=0, category="toy")
    assert paper.posterior_temperature == 1.0 and paper.pairwise == "paper" and paper.n_components == 6
    r = run_manifold(feats, valid, p, gt_parts=gt)
    assert r.embedding.dim == 8 + PARAMS["init_dims"]
    top = [row["mean_top_posterior"] for row in r.rows]
    r0 = run_manifold(feats, valid, paper, gt_parts=gt)
    assert np.mean(top) < np.mean([row["mean_top_posterior"] for row in r0.rows])


def test_hard_em_phase_skips_clustering_and_settles():
    feats, valid, gt = _toy(4, noise=1.2)
    base = {**PARAMS, "max_iter": 8, "tol": 0.0}
    every = run_manifold(feats, valid, ManifoldParams(**base), gt_parts=gt)
    fixed = run_manifold(feats, valid, ManifoldParams(**base, recluster_until=1), gt_parts=gt)
    assert len(every.rows) == len(fixed.rows) == 9
    # iterations 0 and 1 are the same computation; afterwards the clustering step is skipped:
    # the labels the part models start from are the previous iteration's graph-cut output
    assert [r["energy"] for r in fixed.rows[:2]] == [r["energy"] for r in every.rows[:2]]
    for prev, row in zip(fixed.rows[1:], fixed.rows[2:]):
        assert row["ari_cluster"] == pytest.approx(prev["ari"])
    # no re-clustering and no resampling between iterations: the labels reach a fixed point,
    # while re-clustering every iteration keeps moving some
    assert all(r["changed"] == 0 for r in fixed.rows[-3:])
    assert any(r["changed"] > 0 for r in every.rows[-3:])
    cfg = {"variant": "improved", **PARAMS, "improved": {"recluster_until": 1}}
    p = ManifoldParams.from_config(cfg, seed=0, category="toy")
    assert p.recluster_until == 1
    assert ManifoldParams.from_config({**cfg, "variant": "paper"}, seed=0).recluster_until is None


def test_pairwise_terms():
    valid = np.ones((2, 6, 6), bool)
    g = gc.GridGraph.from_valid(valid)
    lab = np.zeros((2, 6, 6), int)
    lab[:, :, 3:] = 1
    lab[:, 5, :] = 2
    lab = g.to_nodes(lab)
    med = part_medians(g, lab, 4)
    assert np.isnan(med[3]).all() and med[1, 1] > med[0, 1]
    V, D, s2 = pairwise_matrix("paper", 2.0, med, None)
    assert np.allclose(np.diag(V), 0) and np.allclose(V, V.T)
    assert V[0, 1] == pytest.approx(2 * np.exp(-D[0, 1] / s2))
    Vm, _, _ = pairwise_matrix("metric", 2.0, med, s2)
    off = ~np.eye(4, dtype=bool)
    assert np.allclose(Vm[off] + V[off], 2.0)
    A = contact_matrix(g, lab, 4)
    Vc, _, _ = pairwise_matrix("contact", 1.0, med, None, A)
    assert A[0, 1] > 0 and A[0, 3] == 0
    assert Vc[0, 3] == pytest.approx(1.0) and Vc[0, 1] < Vc[0, 3]


def test_bad_input_is_a_clear_error():
    feats, valid, _ = _toy(N=2)
    with pytest.raises(SopcorrError, match="do not match"):
        run_manifold(feats, valid[:, :-1], ManifoldParams(**PARAMS))


def test_write_outputs_follow_the_contract(tmp_path):
    import pandas as pd
    import zarr

    from sopcorr.features.store import FeatureStore
    from sopcorr.manifold.refine import ManifoldOutputs, write_outputs

    feats, valid, gt = _toy(4, N=4)
    p = ManifoldParams(**{**PARAMS, "max_iter": 1})
    r = run_manifold(feats, valid, p, gt_parts=gt)
    attrs = {"backbone": "toy", "layers": ["x"], "input_size": 48, "stride": 4,
             "image_ids": [f"toy/{i}" for i in range(4)], "image_hw": [[48, 40]] * 4,
             "normalisation": "l2", "relu": True}
    out = tmp_path / "toy"
    names = {"convergence": "convergence.csv", "embedding": "embedding.npz", "part_models": "part_models.npz",
             "labels": "labels.zarr", "embedded": "embedded.zarr", "embedded_iter1": "embedded_iter1.zarr",
             "figure": "convergence.png"}
    write_outputs(r, ManifoldOutputs.from_mapping({k: out / v for k, v in names.items()}), feats, valid, attrs, p,
                  title="toy")
    for name in ("convergence.csv", "embedding.npz", "part_models.npz", "convergence.png"):
        assert (out / name).is_file()
    rows = pd.read_csv(out / "convergence.csv")
    assert {"changed", "energy", "seconds_kfd", "seconds_graphcut", "largest_share", "ari", "nmi"} <= set(rows.columns)
    lab = zarr.open_array(str(out / "labels.zarr"), mode="r")
    assert lab.shape == valid.shape and lab.dtype == np.int16
    assert np.array_equal(lab[:], r.labels)
    for name in ("embedded.zarr", "embedded_iter1.zarr"):
        st = FeatureStore.open(out / name)
        assert st.shape == valid.shape + (6,) and st.ids == attrs["image_ids"]
        assert np.array_equal(st.valid, valid)
    emb = np.load(out / "embedding.npz")
    assert emb["kfd_projection"].shape[1] == 6


def test_embedded_iter1_holds_the_first_kfd_iteration(tmp_path):
    from sopcorr.features.store import FeatureStore
    from sopcorr.manifold.refine import ManifoldOutputs, embed_grid, write_outputs

    feats, valid, gt = _toy(5, N=4)
    p = ManifoldParams(**{**PARAMS, "max_iter": 2, "tol": 0.0})
    r = run_manifold(feats, valid, p, gt_parts=gt)
    assert [row["iteration"] for row in r.rows] == [0, 1, 2]
    fields = ("convergence", "embedding", "part_models", "labels", "embedded", "embedded_iter1", "figure")
    outs = ManifoldOutputs.from_mapping({k: tmp_path / k for k in fields})
    attrs = {"backbone": "toy", "layers": ["x"], "input_size": 48, "stride": 4,
             "image_ids": [f"toy/{i}" for i in range(4)], "image_hw": [[48, 40]] * 4,
             "normalisation": "l2", "relu": True}
    write_outputs(r, outs, feats, valid, attrs, p)
    first = np.stack(list(embed_grid(r.first_embedding, feats, valid))).astype(np.float16)
    last = np.stack(list(embed_grid(r.embedding, feats, valid))).astype(np.float16)
    assert not np.array_equal(first, last)
    assert np.array_equal(np.asarray(FeatureStore.open(outs.embedded_iter1).features[:]), first)
    assert np.array_equal(np.asarray(FeatureStore.open(outs.embedded).features[:]), last)


def test_gt_parts_sampled_at_cell_centres():
    from sopcorr.geometry import FeatureGrid, Letterbox
    from sopcorr.manifold.metrics import gt_parts_on_grid

    pm = np.zeros((32, 64), np.uint8)
    pm[:, 32:] = 3
    grid = FeatureGrid(Letterbox(32, 64, 64), 8)  # 8x8 cells, rows 4..7 are padding
    out = gt_parts_on_grid([pm, None], [grid, grid])
    assert out.shape == (2, 8, 8)
    assert np.all(out[0, :4, :4] == 0) and np.all(out[0, :4, 4:] == 3)
    assert np.all(out[0, 4:] == -1) and np.all(out[1] == -1)


def test_gather_valid_views_a_fully_valid_array_and_copies_otherwise():
    from sopcorr.manifold.refine import gather_valid

    feats, valid, _ = _toy(3, N=3)
    full = np.ones_like(valid)
    X = gather_valid(feats, full)  # no second copy of a large in-memory feature array
    assert np.shares_memory(X, feats) and not X.flags.writeable
    assert X.dtype == np.float16 and np.array_equal(X, feats.reshape(-1, feats.shape[-1]))
    Y = gather_valid(feats, valid)  # padding cells: a copy of the valid rows, in node order
    assert not np.shares_memory(Y, feats) and np.array_equal(Y, feats[valid])
    Z = gather_valid(feats.astype(np.float64), full)  # other dtypes: a float32 copy as before
    assert Z.dtype == np.float32 and not np.shares_memory(Z, feats)


def test_a_run_on_an_in_memory_array_equals_one_on_a_copy_per_image():
    # the view above must not change the run: an array-like read per image (as zarr is) gives
    # the same labels and energies, and the caller's array is left as it was
    feats, valid, gt = _toy(4)
    full = np.ones_like(valid)
    before = feats.copy()

    class PerImage:
        shape, dtype = feats.shape, feats.dtype

        def __getitem__(self, i):
            return np.array(feats[i])

    p = ManifoldParams(**{**PARAMS, "max_iter": 2, "tol": 0.0})
    a = run_manifold(feats, full, p, gt_parts=gt)
    b = run_manifold(PerImage(), full, p, gt_parts=gt)
    assert np.array_equal(a.labels, b.labels)
    assert [r["energy"] for r in a.rows] == [r["energy"] for r in b.rows]
    assert np.array_equal(feats, before)
