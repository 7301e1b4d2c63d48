"""Checkpoints written before the two architectures became packages still load and match as
they did: tests/fixtures/checkpoints holds a correlation network (head only, frozen encoder) and
a paper network (the tests' tiny encoder), each saved by the shared loop of commit 99452b0, and
what that code computed with them (``expected.npz``; ``cli.json``: ``sopcorr match --run`` on a
run holding the correlation network). How they were made: tests/fixtures/README.md."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import siamese_helpers  # noqa: F401 - registers the paper network's tiny test encoder
from sopcorr.matchers.correlation_network import CorrelationNetworkMatcher
from sopcorr.matchers.networks import NetworkParams, network_matcher
from sopcorr.matchers.paper_network import PaperNetworkMatcher
from sopcorr.siamese.checkpoint import CheckpointError, read_checkpoint

FIX = Path(__file__).parent / "fixtures" / "checkpoints"
CPU = NetworkParams(device="cpu")


def _image(h, w, seed):
    """The fixtures' test images (the same function made them)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(float)
    base = np.stack([np.sin(xs / 7.0 + k) * np.cos(ys / 9.0 - k) for k in range(3)], -1)
    cx, cy = w * 0.45, h * 0.5
    blob = np.exp(-(((xs - cx) / (0.18 * w)) ** 2 + ((ys - cy) / (0.2 * h)) ** 2))[..., None]
    im = 0.35 * base + blob * np.array([1.0, 0.6, 0.2]) + 0.05 * rng.standard_normal((h, w, 3))
    return np.clip(127 + 110 * im, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def expected():
    return np.load(FIX / "expected.npz")


A, B = _image(96, 128, 0), _image(120, 100, 1)


def test_old_correlation_checkpoint_loads_and_matches_as_before(expected):
    ck = read_checkpoint(FIX / "correlation_model.pt")
    assert ck.architecture == "correlation" and ck.spec.in_channels == 304
    assert {"model", "spec", "step", "config", "history", "optimizer", "rng"} <= set(ck.data)
    m = network_matcher(FIX / "correlation_model.pt", CPU)
    assert isinstance(m, CorrelationNetworkMatcher)
    c = m.match_images(A, B)
    np.testing.assert_allclose(c.target_xy, expected["correlation_target_xy"], atol=1e-4)
    np.testing.assert_allclose(c.score, expected["correlation_score"], atol=1e-5)


def test_old_paper_checkpoint_loads_and_matches_as_before(expected):
    ck = read_checkpoint(FIX / "paper_model.pt")
    assert ck.architecture == "paper" and ck.spec.backbone == "tiny_test"
    # the state dict's names are the network's (a renamed module would not load strictly)
    assert {k.split(".")[0] for k in ck.data["model"]} == {"encoder", "fuse", "up", "skip", "merge", "head",
                                                          "final_up"}
    m = network_matcher(FIX / "paper_model.pt", CPU)
    assert isinstance(m, PaperNetworkMatcher)
    c = m.match_images(A, B)
    np.testing.assert_allclose(c.target_xy, expected["paper_target_xy"], atol=1e-4)
    np.testing.assert_allclose(c.score, expected["paper_score"], atol=1e-5)
    with pytest.raises(CheckpointError, match="a 'paper' network, not a 'correlation' one"):
        CorrelationNetworkMatcher(checkpoint=FIX / "paper_model.pt")


def test_match_run_on_a_run_written_before(tmp_path, expected, capsys):
    """``sopcorr match --run`` on a run whose network was trained before the architectures became
    packages: the same matcher, the same correspondence as that code wrote."""
    from sopcorr.cli import main
    from sopcorr.match import read_correspondence

    run = tmp_path / "run"
    (run / "siamese" / "improved").mkdir(parents=True)
    shutil.copy(FIX / "correlation_model.pt", run / "siamese" / "improved" / "model.pt")
    Image.fromarray(A).save(tmp_path / "a.png")
    Image.fromarray(B).save(tmp_path / "b.png")
    out = tmp_path / "m.json"
    assert main(["match", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--run", str(run), "-o", str(out),
                 "--device", "cpu", "--method", "learned"]) == 0  # the run has no categories: forced
    assert "ours_network_geometric" in capsys.readouterr().out
    got = read_correspondence(out)
    before = json.loads((FIX / "cli.json").read_text())
    assert got["grid"] == before["grid"]
    old = np.array([[[np.nan if v is None else v for v in xy] for xy in row] for row in before["target_xy"]])
    np.testing.assert_allclose(got["target_xy"], old, atol=2e-3)
    np.testing.assert_allclose(got["target_xy"], expected["learned_target_xy"], atol=1e-3)
