"""sopcorr.matchers: frames, the matcher objects, their params (defaults = the schema's), the
shared forward-backward check and the named methods."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sopcorr.errors import SopcorrError
from sopcorr.geometry import DenseCorrespondence, FeatureGrid, Letterbox
from sopcorr.matchers import build
from sopcorr.matchers.base import Frame, ForwardBackward, MinSimilarity, forward_backward_valid


def _grid(g=6, stride=8):
    return FeatureGrid(Letterbox(g * stride, g * stride, g * stride), stride)


def one_hot_frame(g=6, perm=None, embedding=None, labels=None, index=0):
    """Features = one-hot cell index (optionally permuted): nearest neighbours between two
    such frames map each cell to the cell of the same code."""
    n = g * g
    codes = np.arange(n) if perm is None else np.asarray(perm)
    feat = np.eye(n, dtype=np.float32)[codes].reshape(g, g, n)
    return Frame(feat, np.ones((g, g), bool), _grid(g), embedding=embedding, labels=labels, index=index)


# ---------------------------------------------------------------------- nearest neighbour
def test_nn_maps_each_cell_to_the_cell_of_its_code():
    g = 6
    rng = np.random.default_rng(0)
    perm = rng.permutation(g * g)
    src, tgt = one_hot_frame(g), one_hot_frame(g, perm)
    from sopcorr.matchers.nn import NNParams

    corr = build("nn", NNParams(mutual=False, device="cpu")).correspondence(src, tgt)
    # source cell k matches the target cell whose code is k
    where = np.argsort(perm)
    expect = _grid(g).cell_centers_image().reshape(-1, 2)[where].reshape(g, g, 2)
    np.testing.assert_allclose(corr.target_xy, expect, atol=1e-4)
    assert corr.valid.all()


def test_nn_on_the_embedding_and_with_labels():
    from sopcorr.matchers.nn import NNParams

    g = 4
    emb = np.eye(g * g, dtype=np.float32).reshape(g, g, -1)
    labels = np.zeros((g, g), int)
    labels[:, 2:] = 1
    src = one_hot_frame(g, embedding=emb, labels=labels)
    # target: raw features useless (all equal), embedding shifted by one column
    tgt = Frame(np.ones((g, g, 3), np.float32), np.ones((g, g), bool), _grid(g, 8),
                embedding=np.roll(emb, 1, axis=1), labels=labels)
    corr = build("nn", NNParams(descriptor="embedding", mutual=False, device="cpu")).correspondence(src, tgt)
    cols = np.rint(_grid(g, 8).image_to_cell(corr.target_xy.reshape(-1, 2))[:, 0]).reshape(g, g)
    assert (cols == (np.arange(g)[None] + 1) % g).all()
    # label-constrained: column 1 (label 0) would match column 2 (label 1): now stays in label 0
    corr = build("nn", NNParams(descriptor="embedding", mutual=False, labels=True,
                                device="cpu")).correspondence(src, tgt)
    cols = np.rint(_grid(g, 8).image_to_cell(corr.target_xy.reshape(-1, 2))[:, 0]).reshape(g, g)
    assert (labels[np.arange(g)[:, None], cols.astype(int)] == labels).all()
    with pytest.raises(SopcorrError, match="no labels"):
        build("nn", NNParams(labels=True, device="cpu")).correspondence(one_hot_frame(g), one_hot_frame(g))


# ---------------------------------------------------------------------- geometric
def test_geometric_on_identical_frames_is_the_identity():
    from sopcorr.matchers.geometric import GeometricParams

    g = 8
    rng = np.random.default_rng(1)
    feat = rng.normal(size=(g, g, 16)).astype(np.float32)
    emb = rng.normal(size=(g, g, 4)).astype(np.float32)
    fr = Frame(feat, np.ones((g, g), bool), _grid(g), embedding=emb)
    m = build("geometric", GeometricParams())
    corr = m.correspondence(fr, fr)
    np.testing.assert_allclose(corr.target_xy, _grid(g).cell_centers_image(), atol=1e-4)
    d, grid = m.descriptors(fr)
    assert d.shape == (g, g, 20) and grid is fr.grid
    assert np.allclose(np.linalg.norm(d[..., 16:], axis=-1), 0.5, atol=1e-5)
    # raw features only: the embedding is not needed
    raw_only = Frame(feat, np.ones((g, g), bool), _grid(g))
    assert build("geometric", GeometricParams(embedding_weight=0.0)).descriptors(raw_only)[0].shape == (g, g, 16)


def test_geometric_params_pass_every_matcher_setting_to_the_function():
    """correspondence_kwargs: exactly the keyword parameters of geometric_correspondence
    (embedding_weight only builds the descriptor), each with the params' value."""
    import inspect

    from sopcorr.flow.geometric import geometric_correspondence
    from sopcorr.matchers.geometric import GeometricParams

    p = GeometricParams(strength=3.0, max_models=2, seed=7, embedding_weight=0.25)
    kw = p.correspondence_kwargs()
    sig = inspect.signature(geometric_correspondence).parameters
    assert set(kw) <= set(sig) and "embedding_weight" not in kw
    assert kw["strength"] == 3.0 and kw["max_models"] == 2 and kw["seed"] == 7
    optional = {k for k, v in sig.items() if v.default is not inspect.Parameter.empty}
    assert optional - {"valid_src", "valid_tgt", "consensus_src", "consensus_tgt"} == set(kw)  # no setting left out


def test_geometric_matcher_keeps_consensus_per_frame_and_equals_the_function():
    """The matcher's per-frame consensus descriptors give exactly the function's answer, and a
    frame matched against several others computes them once."""
    from sopcorr.flow import geometric as G
    from sopcorr.matchers.geometric import GeometricParams, concat_descriptors

    g = 8
    rng = np.random.default_rng(3)
    frames = []
    for k in range(3):
        valid = np.ones((g, g), bool)
        valid[:, : k + 1] = False
        frames.append(Frame(rng.normal(size=(g, g, 16)).astype(np.float32), valid, _grid(g),
                            embedding=rng.normal(size=(g, g, 4)).astype(np.float32), index=k))
    p = GeometricParams(ransac_iterations=50)
    m = build("geometric", p)
    calls = []
    real = G.consensus_terms
    G.consensus_terms = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        out = {(s, t): m.correspondence(frames[s], frames[t]) for s in range(3) for t in range(3) if s != t}
    finally:
        G.consensus_terms = real
    assert len(calls) == 3  # one per frame, not two per pair
    for (s, t), corr in out.items():
        d = [concat_descriptors(frames[k].features, frames[k].embedding, p.embedding_weight) for k in (s, t)]
        ref = G.geometric_correspondence(d[0], d[1], _grid(g), _grid(g), frames[s].valid, frames[t].valid,
                                         **p.correspondence_kwargs())
        assert np.array_equal(corr.target_xy, ref.target_xy) and np.array_equal(corr.score, ref.score)


def test_concat_descriptors_weights_the_embedding_share():
    from sopcorr.matchers.geometric import concat_descriptors

    rng = np.random.default_rng(0)
    raw, emb = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 2))
    d = concat_descriptors(raw, emb, 0.5)
    assert d.shape == (3, 4, 7)
    assert np.allclose(np.linalg.norm(d[..., :5], axis=-1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(d[..., 5:], axis=-1), 0.5, atol=1e-5)
    assert np.allclose(concat_descriptors(raw, emb, 0.0), concat_descriptors(raw, None, 1.0))


# ---------------------------------------------------------------------- forward-backward
def test_forward_backward_marks_inconsistent_cells():
    g = 6
    grid = _grid(g)
    centres = grid.cell_centers_image()
    ident = DenseCorrespondence(centres.copy(), np.ones((g, g)), np.ones((g, g), bool), grid, "nearest")
    assert forward_backward_valid(ident, ident, 0.5).all()
    # the backward map sends cell (0, 0) far away: only that cell's round trip fails
    back = DenseCorrespondence(centres.copy(), np.ones((g, g)), np.ones((g, g), bool), grid, "nearest")
    back.target_xy[0, 0] = centres[5, 5]
    ok = forward_backward_valid(ident, back, 0.5)
    assert not ok[0, 0] and ok.sum() == g * g - 1
    # a one-cell diagonal miss passes at tolerance 1.5, not at 1.0 (Euclidean)
    back.target_xy[0, 0] = centres[1, 1]
    assert forward_backward_valid(ident, back, 1.5)[0, 0]
    assert not forward_backward_valid(ident, back, 1.0)[0, 0]


class _Table:
    """A matcher whose correspondence from frame a to frame b is given by a table."""

    def __init__(self, table):
        self.table = table

    def correspondence(self, src, tgt):
        return dataclasses.replace(self.table[(src.index, tgt.index)])


def test_forward_backward_and_min_similarity_wrappers():
    g = 4
    grid = _grid(g)
    c = grid.cell_centers_image()
    score = np.linspace(-1, 1, g * g).reshape(g, g).astype(np.float32)
    fwd = DenseCorrespondence(c.copy(), score, np.ones((g, g), bool), grid, "nearest")
    bwd = DenseCorrespondence(c.copy(), score, np.ones((g, g), bool), grid, "nearest")
    bwd.target_xy[3, 3] = c[0, 0]
    a, b = one_hot_frame(g, index=0), one_hot_frame(g, index=1)
    m = ForwardBackward(_Table({(0, 1): fwd, (1, 0): bwd}), 1.0)
    ok = m.correspondence(a, b).valid
    assert not ok[3, 3] and ok.sum() == g * g - 1
    ok = MinSimilarity(_Table({(0, 1): fwd}), 0.0).correspondence(a, b).valid
    assert (ok == (score >= 0)).all()


# ---------------------------------------------------------------------- params = schema
def _schema_default(schema, dotted):
    node = schema
    for part in dotted.split("."):
        node = node["properties"][part]
    return node["default"]


PARAMS = ["sopcorr.matchers.nn:NNParams", "sopcorr.matchers.siftflow:SiftFlowParams",
          "sopcorr.matchers.geometric:GeometricParams", "sopcorr.matchers.networks:NetworkParams",
          "sopcorr.matchers.paper_network:PaperNetworkParams",
          "sopcorr.matchers.correlation_network:CorrelationNetworkParams",
          "sopcorr.matchers.network_geometric:NetworkGeometricParams", "sopcorr.matchers.pseudo:PseudoGTParams"]


def test_every_matcher_class_is_listed_with_its_own_params():
    """MATCHERS names every matcher class of the package; each has its own frozen params
    dataclass (one of PARAMS), and the network matchers' params carry their device."""
    import importlib
    import inspect
    import pkgutil

    import sopcorr.matchers as pkg
    from sopcorr.matchers import MATCHERS, matcher_class

    classes = {matcher_class(k) for k in MATCHERS}
    found = set()
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"sopcorr.matchers.{info.name}")
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            if obj.__module__ == mod.__name__ and obj.__name__.endswith("Matcher") and "params_class" in vars(obj):
                found.add(obj)
    from sopcorr.matchers.networks import NetworkMatcher

    assert found - {NetworkMatcher} == classes, "a matcher class is missing from MATCHERS"
    params = [c.params_class for c in classes]
    assert len(set(params)) == len(params), "two matchers share a params class"
    names = {f"{p.__module__}:{p.__name__}" for p in params}
    assert names <= set(PARAMS)
    for kind in ("paper_network", "correlation_network", "network_geometric"):
        assert "device" in {f.name for f in dataclasses.fields(matcher_class(kind).params_class)}, kind


@pytest.mark.parametrize("where", PARAMS)
def test_params_defaults_equal_the_schema(where):
    import importlib

    from sopcorr.config import load_schema

    mod, name = where.split(":")
    cls = getattr(importlib.import_module(mod), name)
    schema = load_schema()
    defaults = cls()
    assert cls.SCHEMA, f"{name} maps no field to the schema"
    for fld, key in cls.SCHEMA.items():
        assert getattr(defaults, fld) == _schema_default(schema, key), f"{name}.{fld} vs {key}"
    # a dataclass is frozen: settings cannot change after construction
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(defaults, next(iter(cls.SCHEMA)), None)


def test_siftflow_optimiser_defaults_equal_the_schema():
    from sopcorr.config import load_schema
    from sopcorr.flow.siftflow import DEFAULTS

    schema = load_schema()
    for k, v in DEFAULTS.items():
        assert _schema_default(schema, f"flow.siftflow_{k}") == v, k


def test_params_from_config_keys_by_config_name_or_field():
    from sopcorr.matchers.siftflow import SiftFlowParams

    p = SiftFlowParams.from_config({"siftflow_levels": 1, "iterations": 2, "siftflow_radius": 40})
    assert (p.levels, p.iterations, p.sift_radius) == (1, 2, 40)
    with pytest.raises(SopcorrError, match="siftflow_nope"):
        SiftFlowParams.from_config({"siftflow_nope": 1})


# ---------------------------------------------------------------------- frame sources
def _category(tmp_path, n=3, g=4, stride=8):
    from sopcorr.data.model import CategorySpec, Dataset, Instance
    from sopcorr.features.store import write_feature_store

    size = g * stride
    ids = [f"toy/{k:03d}" for k in range(n)]
    insts = [Instance(id=i, image=f"{k}.png", category="toy", bbox=None, keypoints={}, split="train")
             for k, i in enumerate(ids)]
    ds = Dataset("toy", tmp_path, {"toy": CategorySpec(["a"])}, insts)
    rng = np.random.default_rng(0)

    def store(name, c, ids=ids):
        attrs = dict(backbone="toy", layers=["x"], input_size=size, stride=stride, image_ids=list(ids),
                     image_hw=[[size, size]] * n, normalisation="l2", relu=False)
        path = tmp_path / name
        write_feature_store(path, rng.normal(size=(n, g, g, c)).astype(np.float32), np.ones((n, g, g), bool),
                            None, attrs, dtype=np.float32)
        return path

    return ds, store


def test_frame_source_builds_cached_frames_from_explicit_stores(tmp_path):
    from PIL import Image

    from sopcorr.errors import DatasetError
    from sopcorr.features.store import FeatureStore
    from sopcorr.matchers.base import FrameSource, frame_sources

    ds, store = _category(tmp_path)
    feats, emb = store("f.zarr", 5), store("e.zarr", 2)
    labels = np.arange(3 * 16).reshape(3, 4, 4) % 3
    for k in range(3):
        Image.fromarray(np.full((32, 32, 3), 10 * k, np.uint8)).save(tmp_path / f"{k}.png")
    src = frame_sources(ds, feats, embedding=emb, labels=labels)
    fr = src["embedding"][1]
    assert fr is src["embedding"].frame(1)                              # cached
    np.testing.assert_array_equal(fr.features, FeatureStore.open(feats).load(1))
    np.testing.assert_array_equal(fr.embedding, FeatureStore.open(emb).load(1))
    np.testing.assert_array_equal(fr.labels, labels[1])
    assert fr.id == "toy/001" and fr.grid.shape == (4, 4) and fr.valid.all()
    assert fr.image.shape == (32, 32, 3) and fr.image[0, 0, 0] == 10    # loaded on first use
    assert src["raw"][0].embedding is None and len(src["raw"]) == 3
    assert src["raw"].global_desc.shape[0] == 3
    # a store of other images, or labels of another length, are refused naming the file
    other = store("o.zarr", 5, ids=["toy/000", "toy/002", "toy/001"])
    with pytest.raises(DatasetError, match="o.zarr: image ids differ"):
        FrameSource(ds, other)
    with pytest.raises(DatasetError, match="2 label maps for 3 instances"):
        FrameSource(ds, feats, labels=labels[:2])
