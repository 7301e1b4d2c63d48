"""One evaluation job computes each thing once (issue 25, item 1): a (matcher, source, target)
correspondence that several protocols (or the pseudo ground truth's forward-backward check and
``ours_geometric``) ask for, and a frame's encoder pass for networks with the same encoder
(``model.pt`` and ``finetuned.pt`` of a frozen-encoder correlation network). Each shared result
equals the one computed without sharing, bit for bit."""
from __future__ import annotations

import collections

import numpy as np
import pytest

from evaluate_toys import toy_context
from sopcorr.evaluate.keypoints import keypoint_requests, run_keypoint_evaluation
from sopcorr.evaluate.pairs import run_pair_evaluation
from sopcorr.evaluate.protocols import (CategoryEvaluation, CategoryOutputs, planned_requests,
                                        share_job_correspondences)
from sopcorr.geometry import FeatureGrid, Letterbox
from sopcorr.matchers.base import Frame, SharedCorrespondences, share_correspondences
from sopcorr.matchers.methods import MatcherSettings, build_methods

SIZE, STRIDE = 64, 8


class CachedFrames:
    """n frames of random features and embedding on an 8 x 8 grid, with random images; one Frame
    object per index (as FrameSource's cache gives them)."""

    def __init__(self, n, seed=0):
        rng = np.random.default_rng(seed)
        self.grid = FeatureGrid(Letterbox(SIZE, SIZE, SIZE), STRIDE)
        h, w = self.grid.shape
        self.frames = [Frame(rng.normal(size=(h, w, 16)).astype(np.float32), np.ones((h, w), bool), self.grid,
                             embedding=rng.normal(size=(h, w, 4)).astype(np.float32),
                             image_source=rng.integers(0, 255, size=(SIZE, SIZE, 3), dtype=np.uint8), index=i)
                       for i in range(n)]

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, i):
        return self.frames[int(i)]


SETTINGS = MatcherSettings.from_params({
    "nn": {"device": "cpu"}, "siftflow": {"siftflow_levels": 1, "siftflow_iterations": 2},
    "geometric": {"seed": 0, "ransac_iterations": 20},
    "pseudo_gt": {"variant": "improved", "geometric": {"seed": 0, "ransac_iterations": 20, "fb_tolerance": 1.5}}})
METHODS = ["nn_raw", "convflow", "convflow_prior", "ours_geometric", "pseudo_gt"]


def _equal(a, b):
    return (np.array_equal(a.target_xy, b.target_xy, equal_nan=True) and np.array_equal(a.score, b.score)
            and np.array_equal(a.valid, b.valid))


def _count_computations(monkeypatch):
    """(matcher class, params, id(src), id(tgt)) -> computations, of every plain matcher."""
    from sopcorr.matchers.geometric import GeometricMatcher
    from sopcorr.matchers.nn import NearestNeighbourMatcher
    from sopcorr.matchers.siftflow import SiftFlowMatcher

    counts = collections.Counter()
    for cls in (GeometricMatcher, NearestNeighbourMatcher, SiftFlowMatcher):
        orig = cls.correspondence

        def corr(self, src, tgt, orig=orig):
            counts[(type(self).__name__, self.params, id(src), id(tgt))] += 1
            return orig(self, src, tgt)
        monkeypatch.setattr(cls, "correspondence", corr)
    return counts


def test_shared_correspondences_equal_the_unshared_ones_and_are_dropped_after_their_last_use(monkeypatch):
    frames = {"raw": CachedFrames(4), "embedding": CachedFrames(4, seed=1)}
    plain = {m.name: m for m in build_methods(METHODS, SETTINGS, frames)}
    pairs = [(0, 1), (1, 0), (2, 3), (3, 1)]
    expected = {(n, s, t): plain[n].correspondence(s, t) for n in METHODS for s, t in pairs}

    counts = _count_computations(monkeypatch)
    shared = SharedCorrespondences()
    methods = {m.name: m for m in build_methods(METHODS, SETTINGS, frames)}
    for m in methods.values():
        m.matcher = share_correspondences(m.matcher, shared)
    for _ in range(2):  # two protocols asking for the same pairs
        for n in METHODS:
            for s, t in pairs:
                shared.expect(methods[n].matcher, methods[n].frames[s], methods[n].frames[t])
    for _ in range(2):
        for n in METHODS:
            for s, t in pairs:
                got = methods[n].correspondence(s, t)
                assert _equal(got, expected[(n, s, t)]), (n, s, t)
                got.valid = np.zeros_like(got.valid)  # a consumer rebinding a field changes its copy only
    # every (matcher, source, target) once: ours_geometric's match is the pseudo ground truth's
    # forward match, its backward match of (1, 0) is the forward match of (0, 1)
    assert set(counts.values()) == {1}
    geo = [k for k in counts if k[0] == "GeometricMatcher"]
    assert len(geo) == len({(s, t) for s, t in pairs} | {(t, s) for s, t in pairs})
    assert shared.served > 0 and not shared.store and not shared.remaining
    # a stored result cannot be written into
    shared.expect(methods["nn_raw"].matcher, frames["raw"][0], frames["raw"][2])
    shared.expect(methods["nn_raw"].matcher, frames["raw"][0], frames["raw"][2])
    got = methods["nn_raw"].correspondence(0, 2)
    with pytest.raises(ValueError):
        got.target_xy[0, 0] = 0.0


def test_a_job_computes_each_correspondence_once_with_the_same_records(monkeypatch):
    """The protocols of one job (keypoints, pairs, the dense protocol's pairs again, figures) over
    shared correspondences: the same records, each (matcher, source, target) computed once."""
    from sopcorr.evaluate.protocols import (ClassifyProtocol, DenseProtocol, FigureProtocol, KeypointProtocol,
                                            PairProtocol)
    from sopcorr.viz.correspondence import figure_pairs

    cat = toy_context(12)
    frames = {"raw": CachedFrames(12), "embedding": CachedFrames(12, seed=1)}
    names = METHODS
    ev = CategoryEvaluation(
        keypoints=KeypointProtocol(tuple(names), 3, 0.1, 0.1, 0.1, 4),
        classify=ClassifyProtocol((), (), 32, 1.0),
        figures=FigureProtocol(("ours_geometric", "nn_raw"), 2),
        pairs=PairProtocol(tuple(names), (0.1,), None),
        dense=DenseProtocol(("nn_raw", "ours_geometric", "pseudo_gt"), (0.1,), 4, None), seed=0)
    outputs = CategoryOutputs("k.json", "c.json", "f.png", "kf.png", pairs="p.json", dense="d.json")

    def protocols(built):
        kp = run_keypoint_evaluation(cat, [built[n] for n in names], k=3, alpha=0.1, n_threshold_queries=4)
        pr = run_pair_evaluation(cat, [built[n] for n in names], (0.1,))
        dn = run_pair_evaluation(cat, [built[n] for n in ev.dense.methods], (0.1,))  # the dense protocol's pairs
        fig = [built[n].correspondence(b, a) for a, b in figure_pairs(cat, 2) for n in ev.figures.methods]
        return kp, pr, dn, fig

    plain = dict(zip(names, build_methods(names, SETTINGS, frames)))
    before = protocols(plain)
    counts = _count_computations(monkeypatch)
    built = dict(zip(names, build_methods(names, SETTINGS, frames)))
    shared = share_job_correspondences(cat, built, ev, outputs)
    after = protocols(built)
    assert repr(before[:3]) == repr(after[:3])
    assert all(_equal(a, b) for a, b in zip(before[3], after[3]))
    assert counts and max(counts.values()) == 1, [k for k, v in counts.items() if v > 1][:3]
    assert not shared.store and shared.served >= len(ev.dense.methods) * len(cat.pairs())
    # the plan is what the protocols ask: the keypoint requests, one method per group
    req = keypoint_requests(cat, [built[n] for n in names], 3, 4, 0)
    assert len(req) == len({built[n].base for n in names}) * (4 + len(cat.split_indices("test"))) * 3
    assert planned_requests(cat, built, ev, outputs)[:len(req)] == req


# --------------------------------------------------------------------------- networks
def _checkpoint(path, seed):
    """A frozen-encoder correlation network (head weights only, as the pipeline saves it)."""
    import torch

    from sopcorr.siamese.checkpoint import save_checkpoint
    from sopcorr.siamese.correlation.net import NetworkSpec, build_network

    spec = NetworkSpec(backbone="efficientnet_lite0", input_size=64, layers=("stage5", "stage6"), relu=False,
                       in_channels=112 + 192, stride=16, hidden_channels=8, descriptor_dim=8)
    torch.manual_seed(seed)
    model = build_network(spec, with_encoder=False)
    save_checkpoint(path, dict(model=model.state_dict(), spec=spec.to_dict(), step=0))
    return path


def test_each_image_is_encoded_once_for_networks_sharing_their_encoder(tmp_path, monkeypatch):
    from sopcorr.siamese.correlation.net import CorrelationNet

    cks = {"model": _checkpoint(tmp_path / "model.pt", 0), "finetuned": _checkpoint(tmp_path / "finetuned.pt", 1)}
    settings = MatcherSettings.from_params({"siamese": {}, "geometric": {"seed": 0, "ransac_iterations": 20}},
                                           {"siamese": "cpu"})
    names = ["ours_network", "ours_finetuned", "ours_network_geometric", "ours_finetuned_prior"]
    n = 4
    pairs = [(s, t) for s in range(n) for t in range(n) if s != t]
    # without sharing: each matcher alone, on frames of its own
    alone = {}
    for name in names[:3]:
        fr = CachedFrames(n)
        m = build_methods([name], settings, {"raw": fr}, cks)[0]
        alone[name] = [m.correspondence(s, t) for s, t in pairs]
        alone[name + ".descriptors"] = [m.matcher.descriptors(fr[i])[0] for i in range(n)]

    encoded = collections.Counter()
    orig = CorrelationNet.encode

    def encode(self, images):
        encoded[images.cpu().numpy().tobytes()] += 1
        return orig(self, images)
    monkeypatch.setattr(CorrelationNet, "encode", encode)
    fr = CachedFrames(n)
    methods = dict(zip(names, build_methods(names, settings, {"raw": fr}, cks)))
    assert methods["ours_network"].matcher.encoder_peers  # model.pt and finetuned.pt share the encoder
    for name in names[:3]:
        got = [methods[name].correspondence(s, t) for s, t in pairs]
        assert all(_equal(a, b) for a, b in zip(got, alone[name])), name
        for i in range(n):
            assert np.array_equal(methods[name].matcher.descriptors(fr[i])[0], alone[name + ".descriptors"][i])
    # one encoder pass per image for both checkpoints and the geometric read-out
    assert len(encoded) == n and set(encoded.values()) == {1}, encoded.values()


def test_networks_with_different_encoders_are_not_peers(tmp_path):
    import torch

    from sopcorr.matchers.networks import network_matcher, share_encoders

    a = network_matcher(_checkpoint(tmp_path / "a.pt", 0))
    b = network_matcher(_checkpoint(tmp_path / "b.pt", 1))
    share_encoders([a, b])
    assert a.encoder_peers == (b,) and b.encoder_peers == (a,)
    with torch.no_grad():
        next(iter(b.model.encoder.parameters())).add_(1e-6)
    share_encoders([a, b])
    assert a.encoder_peers == () and b.encoder_peers == ()
