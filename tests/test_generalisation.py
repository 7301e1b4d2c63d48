"""The generalisation protocols (issue 20, sopcorr.evaluate.generalisation): the seeded half
split, the files the inductive protocol's fitted steps read (none holds a held-out image), the
held-out embedding, the leave-one-out training set, the cross-run network at another input size,
the protocol tables and the report's section on them."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sopcorr.data.generic import load_dataset
from sopcorr.errors import ConfigError, DatasetError, SopcorrError
from sopcorr.evaluate.generalisation import (PROTOCOL_METHODS, evaluation_dataset, half_split, inductive_split,
                                             leave_one_out, write_inductive_split)
from sopcorr.features.store import FeatureStore, write_feature_store


# --------------------------------------------------------------------------- the split
def test_half_split_is_a_seeded_half_independent_of_order():
    ids = [f"bird/{k:04d}" for k in range(21)]
    fit = half_split(ids, 0)
    assert fit.dtype == bool and fit.sum() == 10                      # fit N // 2, held out the rest
    assert np.array_equal(fit, half_split(ids, 0))                    # deterministic
    rev = half_split(ids[::-1], 0)[::-1]
    assert np.array_equal(fit, rev)                                   # the same ids, whatever the order
    others = [half_split(ids, s) for s in (1, 2, 3)]
    assert any(not np.array_equal(fit, o) for o in others)            # the seed changes it


def test_inductive_split_needs_two_images_per_half(tiny_synthetic):
    bird = tiny_synthetic.of_category("bird")
    split = inductive_split(bird, 0)
    assert len(split.fit) == 3 and len(split.held_out) == 3
    assert not set(split.fit) & set(split.held_out)
    assert set(split.fit) | set(split.held_out) == {i.id for i in bird.instances}
    small = evaluation_dataset(bird, split)
    small.instances = small.instances[:3]
    with pytest.raises(DatasetError, match="needs at least 4"):
        inductive_split(small, 0)


def _category_store(tmp_path, ds, category):
    """data/<cat>/instances.json and a features/<cat>.zarr whose rows are the image index."""
    from sopcorr.data.prepare import prepare_category

    sub = prepare_category(ds, category, tmp_path / "data" / category / "instances.json")
    n, h, w, c = len(sub.instances), 3, 4, 5
    feats = np.arange(n, dtype=np.float32)[:, None, None, None] + np.zeros((n, h, w, c), np.float32)
    valid = np.ones((n, h, w), bool)
    valid[:, -1] = (np.arange(n) % 2 == 0)[:, None]                   # per-image masks differ
    attrs = dict(backbone="efficientnet_lite0", layers=["stage5"], input_size=64, stride=16,
                 image_ids=[i.id for i in sub.instances], image_hw=[[60, 64]] * n,
                 normalisation={"input_mean": [0, 0, 0], "input_std": [1, 1, 1]}, relu=False)
    path = tmp_path / "features" / f"{category}.zarr"
    write_feature_store(path, feats, valid, None, attrs)
    return sub, path


def test_the_fitted_steps_files_hold_only_the_fit_half(tmp_path, tiny_synthetic):
    sub, features = _category_store(tmp_path, tiny_synthetic, "bird")
    out = tmp_path / "inductive"
    split = write_inductive_split(tmp_path / "data" / "bird" / "instances.json", features, 0,
                                  out / "data/bird/instances.json", out / "features/bird.zarr",
                                  out / "data/bird/evaluation.json")
    held = set(split.held_out)
    # what the manifold, the pseudo flow and the network training open: the fit half's files
    from sopcorr.matchers.base import FrameSource

    frames = FrameSource(out / "data/bird/instances.json", out / "features/bird.zarr", category="bird")
    assert frames.ids == list(split.fit) and not held & set(frames.ids)
    store = FeatureStore.open(out / "features/bird.zarr")
    full = FeatureStore.open(features)
    rows = [full.ids.index(i) for i in store.ids]
    assert not held & set(store.ids) and len(store) == len(split.fit)
    # the rows are the fit images' own features, masks and global descriptors, nothing else
    np.testing.assert_array_equal(np.asarray(store.features[:])[:, 0, 0, 0], rows)
    np.testing.assert_array_equal(store.valid, full.valid[rows])
    np.testing.assert_array_equal(store.global_desc, full.global_desc[rows])
    assert [list(hw) for hw in store.image_hw] == [list(full.image_hw[r]) for r in rows]
    fit_ds = load_dataset(out / "data/bird/instances.json", check_images=False)
    assert all(a not in held and b not in held for a, b in fit_ds.pairs)
    # the ground-truth maps the manifold reads (ARI) are the fit images' own
    assert {i.parts for i in fit_ds.instances} <= {i.parts for i in sub.instances}
    # the evaluation: every image, in the feature store's order, the pairs among the held-out half
    ev = load_dataset(out / "data/bird/evaluation.json", check_images=False)
    assert [i.id for i in ev.instances] == full.ids
    assert ev.pairs == [p for p in sub.pairs if p[0] in held and p[1] in held]
    assert ev.path(ev.instances[0].image) == sub.path(sub.instances[0].image)


def test_a_store_of_other_images_is_refused(tmp_path, tiny_synthetic):
    _category_store(tmp_path, tiny_synthetic, "bird")
    _, car = _category_store(tmp_path, tiny_synthetic, "car")
    with pytest.raises(DatasetError, match="image ids differ"):
        write_inductive_split(tmp_path / "data/bird/instances.json", car, 0, tmp_path / "a.json",
                              tmp_path / "b.zarr", tmp_path / "c.json")
    assert not (tmp_path / "b.zarr").exists() and not (tmp_path / "a.json").exists()


def test_held_out_images_are_embedded_with_the_fitted_model(tmp_path, tiny_synthetic):
    from sopcorr.manifold.refine import Embedding, embed_grid, embed_new_images

    _, features = _category_store(tmp_path, tiny_synthetic, "bird")
    rng = np.random.default_rng(0)
    emb = Embedding(None, rng.normal(size=5), rng.normal(size=(5, 2)), raw_weight=1.0)
    npz = tmp_path / "embedding.npz"
    np.savez(npz, **emb.state(), meta=np.str_("{}"))
    out = tmp_path / "embedded_all.zarr"
    assert embed_new_images(npz, features, out) == 6
    store, full = FeatureStore.open(out), FeatureStore.open(features)
    assert store.ids == full.ids and store.shape == (6, 3, 4, 2)
    want = np.stack(list(embed_grid(emb, full.features, full.valid))).astype(np.float16)
    np.testing.assert_array_equal(np.asarray(store.features[:]), want)
    with pytest.raises(DatasetError, match="not a readable manifold embedding"):
        embed_new_images(tmp_path / "missing.npz", features, tmp_path / "x.zarr")


# --------------------------------------------------------------------------- leave one out
def test_leave_one_out_trains_on_every_other_category():
    cats = ["bird", "quadruped", "car", "aircraft"]
    for c in cats:
        rest = leave_one_out(cats, c)
        assert c not in rest and set(rest) | {c} == set(cats) and len(rest) == 3
    assert leave_one_out(cats, "car") == ["bird", "quadruped", "aircraft"]   # config order
    with pytest.raises(SopcorrError, match="at least 2 categories; the run has 1"):
        leave_one_out(["bird"], "bird")
    with pytest.raises(SopcorrError, match="'fish' is not a category"):
        leave_one_out(cats, "fish")


def test_protocol_methods_are_named_methods():
    from sopcorr.matchers.methods import METHODS

    for name, methods in PROTOCOL_METHODS.items():
        assert set(methods) <= set(METHODS), name
        assert {"nn_raw", "ours_geometric", "ours_network", "ours_network_geometric"} <= set(methods), name
    assert "convflow" in PROTOCOL_METHODS["inductive"]


# --------------------------------------------------------------------------- another run's network
def _correlation_checkpoint(path, input_size=64):
    """A frozen-encoder correlation network (head weights only, as the pipeline saves it)."""
    import torch

    from sopcorr.siamese.checkpoint import save_checkpoint
    from sopcorr.siamese.correlation.net import NetworkSpec, build_network

    spec = NetworkSpec(backbone="efficientnet_lite0", input_size=input_size, layers=("stage5", "stage6"), relu=False,
                       in_channels=112 + 192, stride=16, hidden_channels=8, descriptor_dim=8)
    torch.manual_seed(0)
    model = build_network(spec, with_encoder=False)
    save_checkpoint(path, dict(model=model.state_dict(), spec=spec.to_dict(), step=0))
    return path


def test_a_correlation_network_runs_at_another_input_size(tmp_path):
    from sopcorr.matchers.correlation_network import CorrelationNetworkMatcher, CorrelationNetworkParams
    from sopcorr.matchers.networks import NetworkParams, network_matcher
    from sopcorr.siamese.checkpoint import CheckpointError

    ck = _correlation_checkpoint(tmp_path / "model.pt", 64)
    img = np.random.default_rng(0).integers(0, 255, size=(70, 96, 3), dtype=np.uint8)
    own = CorrelationNetworkMatcher(CorrelationNetworkParams(device="cpu"), ck)
    d64, g64 = own.image_descriptors(img)
    assert own.size == 64 and d64.shape[:2] == (4, 4)
    # at this run's input size: the encoder rebuilt for 96 px, the same head on its 6 x 6 grid
    m = network_matcher(ck, NetworkParams(device="cpu", backbone="efficientnet_lite0", input_size=96))
    assert isinstance(m, CorrelationNetworkMatcher)
    assert m.size == 96 and m.spec.input_size == 96 and m.spec.grid_size == 6
    d96, g96 = m.image_descriptors(img)
    assert d96.shape == (6, 6, 8) and g96.shape == (6, 6)
    grid, _ = m.grid(img)
    np.testing.assert_allclose(d96, m.describe(grid), atol=1e-5)
    corr = m.match_images(img, img[:, ::-1].copy())
    assert corr.target_xy.shape == (6, 6, 2) and np.isfinite(corr.target_xy).all()
    # the geometric read-out on it carries the same override (its params' backbone / input_size)
    from sopcorr.matchers import build
    from sopcorr.matchers.network_geometric import NetworkGeometricParams

    g = build("network_geometric", NetworkGeometricParams(device="cpu", backbone="efficientnet_lite0", input_size=96),
              checkpoint=ck)
    assert g.network.size == 96 and g.network.spec.grid_size == 6
    # the backbone is checked: one line naming the file
    with pytest.raises(CheckpointError, match=r"model.pt: checkpoint was trained with backbone 'efficientnet_lite0', "
                                              r"not 'vgg16'"):
        network_matcher(ck, NetworkParams(device="cpu", backbone="vgg16", input_size=96))


def test_the_papers_network_keeps_its_input_size(tmp_path):
    from sopcorr.matchers.networks import NetworkParams, network_matcher
    from sopcorr.siamese.checkpoint import CheckpointError, save_checkpoint
    from sopcorr.siamese.paper.net import ModelSpec, build_model

    spec = ModelSpec("efficientnet_lite0", 64)
    save_checkpoint(tmp_path / "p.pt", dict(model=build_model(spec).state_dict(), spec=spec.to_dict(), step=0))
    with pytest.raises(CheckpointError, match="input size is 64, not 96"):
        network_matcher(tmp_path / "p.pt", NetworkParams(device="cpu", input_size=96))


def test_matcher_settings_carry_the_evaluated_runs_network():
    from sopcorr.matchers.methods import MatcherSettings

    s = MatcherSettings.from_params({"siamese": {"backbone": "efficientnet_lite0", "input_size": 448}},
                                    {"siamese": "cpu"})
    assert (s.siamese.backbone, s.siamese.input_size, s.siamese.device) == ("efficientnet_lite0", 448, "cpu")
    s = MatcherSettings.from_params({"siamese": {}})
    assert (s.siamese.backbone, s.siamese.input_size) == (None, None)


def test_transfer_source_of_another_backbone_is_one_config_error(tmp_path):
    from sopcorr.workflow_support import check_transfer_source

    meta = tmp_path / "src" / "features" / "bird.zarr" / "zarr.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"attributes": {"backbone": "vgg16"}, "zarr_format": 3, "node_type": "group"}))
    cfg = {"backbone": {"name": "efficientnet_lite0"}, "evaluate": {"transfer_from": "src"}}
    with pytest.raises(ConfigError, match=r"^config error: evaluate.transfer_from: run 'src' was trained on "
                                          r"backbone 'vgg16'") as err:
        check_transfer_source(cfg, tmp_path)
    assert "\n" not in str(err.value)
    check_transfer_source({**cfg, "backbone": {"name": "vgg16"}}, tmp_path)            # same backbone
    check_transfer_source({**cfg, "evaluate": {"transfer_from": "absent"}}, tmp_path)  # not run yet
    check_transfer_source({**cfg, "evaluate": {"transfer_from": None}}, tmp_path)


# --------------------------------------------------------------------------- tables and report
def _pair_records(path, category, values):
    from sopcorr.evaluate.tables import write_records

    recs = [dict(method=m, alpha=a, category=category, value=v, correct=0, total=1, per_pair=pp)
            for m, (v, pp) in values.items() for a in (0.05, 0.1)]
    write_records(path, {"pairs": recs})
    return path


@pytest.mark.parametrize("table", ["inductive", "transfer", "transfer_from_default"])
def test_protocol_tables_have_the_pair_pck_layout(tmp_path, table):
    import pandas as pd

    from sopcorr.evaluate.tables import build_table

    a = _pair_records(tmp_path / "a.json", "car", {"nn_raw": (40.0, [30.0, 50.0]), "ours_network": (60.0, [60.0])})
    b = _pair_records(tmp_path / "b.json", "motorbike", {"nn_raw": (20.0, [20.0]), "ours_network": (30.0, [30.0])})
    notes = {"seed": 0} if table == "inductive" else {"source": "default", "input_size": 448}
    build_table(table, [a, b], ["car", "motorbike"], notes, False, tmp_path / f"{table}.csv")
    df = pd.read_csv(tmp_path / f"{table}.csv")
    assert list(df.columns) == ["method", "alpha", "car", "motorbike", "mean", "per_pair"]
    row = df[(df["method"] == "nn_raw") & (df["alpha"] == 0.1)].iloc[0]
    assert (row["mean"], row["per_pair"]) == (30.0, pytest.approx(100 / 3, abs=0.05))
    md = (tmp_path / f"{table}.md").read_text()
    assert {"inductive": "held-out half", "transfer": "never on this category",
            "transfer_from_default": "network of run 'default'"}[table] in md


def test_the_report_page_shows_the_protocol_tables(tmp_path):
    from sopcorr.evaluate.tables import build_table
    from sopcorr.report_summary import SummaryParams, read_run_table, render_summary

    a = _pair_records(tmp_path / "a.json", "car", {"nn_raw": (40.0, [40.0]), "ours_network": (60.0, [60.0])})
    for t in ("pair_pck", "inductive", "transfer"):
        build_table(t, [a], ["car"], {"seed": 0}, False, tmp_path / f"{t}.csv")
    params = SummaryParams("r", "generic", ("car",), "improved", "lite0 at 448 px", 0.1)
    page = render_summary([read_run_table(tmp_path / f"{t}.csv") for t in ("transfer", "pair_pck", "inductive")],
                          [], params)
    assert page.index("Pair-wise PCK") < page.index("Generalisation") < page.index("`inductive.html`_") \
        < page.index("`transfer.html`_")
    assert "transductive" in page and "supervised" in page
    without = render_summary([read_run_table(tmp_path / "pair_pck.csv")], [], params)
    assert "Generalisation" not in without
    # a protocol without pairs (no dataset pair among the held-out half): an empty table, shown
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"pairs": []}))
    build_table("inductive", [empty], ["car"], {"seed": 0}, False, tmp_path / "inductive.csv")
    assert (tmp_path / "inductive.csv").read_text().startswith("method,alpha,car,mean,per_pair\n")
    page = render_summary([read_run_table(tmp_path / f"{t}.csv") for t in ("pair_pck", "inductive")], [], params)
    assert "`inductive.html`_" in page
