"""sopcorr.matchers.paper_network.PaperNetworkMatcher: known answers with a constant-flow
network, descriptor shape, wrong checkpoints, the Frame interface, the factory that reads the
checkpoint."""
import numpy as np
import pytest
import torch

from sopcorr.matchers import build
from sopcorr.matchers.base import Frame
from sopcorr.matchers.networks import NetworkParams, network_matcher
from sopcorr.matchers.paper_network import PaperNetworkMatcher, PaperNetworkParams
from sopcorr.siamese.checkpoint import CheckpointError, save_checkpoint
from sopcorr.siamese.paper.net import ModelSpec, build_model

CPU = PaperNetworkParams(device="cpu")

S = 64


def make_checkpoint(path, dx=0.0, backbone="efficientnet_lite0"):
    """An untrained network whose head predicts the constant flow (dx, 0) input pixels."""
    spec = ModelSpec(backbone, S)
    m = build_model(spec)
    with torch.no_grad():
        m.head.bias.copy_(torch.tensor([dx / m.flow_unit, 0.0]))
    save_checkpoint(path, dict(model=m.state_dict(), spec=spec.to_dict(), step=0))
    return path


def _img(h, w, seed):
    return np.random.default_rng(seed).integers(0, 255, size=(h, w, 3), dtype=np.uint8)


def test_constant_flow_known_answer(tmp_path):
    ck = make_checkpoint(tmp_path / "m.pt", dx=4.0)
    mt = PaperNetworkMatcher(CPU, ck)
    a, b = _img(40, 80, 0), _img(120, 60, 1)  # different aspect ratios and scales
    corr = mt.match_images(a, b)
    assert corr.target_xy.shape == (S, S, 2) and corr.grid.stride == 1
    assert corr.score.shape == (S, S) and corr.valid.dtype == bool
    # interior source pixels (away from the bilinear upsampler's border) move by +4 input px
    la, lb = corr.grid.letterbox, None
    src_px = np.array([[30.0, 20.0], [20.0, 12.0]])  # source image points
    tgt, _ = corr.transfer(src_px)
    from sopcorr.geometry import Letterbox
    lb = Letterbox(120, 60, S)
    expect = lb.input_to_image(la.image_to_input(src_px) + [4.0, 0.0])
    np.testing.assert_allclose(tgt, expect, atol=1e-3)
    # the padding of the source letterbox is never valid
    rh, rw = la.resized_hw
    assert not corr.valid[rh + 1:].any()
    # matches that leave the resized target are invalid: the target is 32 px wide in the input
    assert not corr.valid[:, 40:].any()


def test_features_shape_and_norm(tmp_path):
    mt = PaperNetworkMatcher(CPU, make_checkpoint(tmp_path / "m.pt"))
    f, grid = mt.image_descriptors(_img(50, 64, 2))
    assert f.shape == (S // 8, S // 8, 40 + 112 + 192) and f.dtype == np.float32
    assert grid.stride == 8 and grid.shape == (8, 8)
    np.testing.assert_allclose(np.linalg.norm(f, axis=-1), 1.0, atol=1e-4)


def test_wrong_checkpoints(tmp_path):
    ck = make_checkpoint(tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="backbone 'efficientnet_lite0', not 'vgg16'"):
        PaperNetworkMatcher(PaperNetworkParams(device="cpu", backbone="vgg16"), ck)
    with pytest.raises(CheckpointError, match="not found"):
        PaperNetworkMatcher(CPU, tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt: not a readable"):
        PaperNetworkMatcher(CPU, bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": 1}, other)
    with pytest.raises(CheckpointError, match="not a sopcorr Siamese checkpoint"):
        PaperNetworkMatcher(CPU, other)
    # weights of another architecture under a valid record
    ckd = torch.load(ck, weights_only=False)
    ckd["spec"]["decoder_channels"] = 32
    torch.save(ckd, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        PaperNetworkMatcher(CPU, tmp_path / "mismatch.pt")


def test_score_is_descriptor_agreement(tmp_path):
    """Zero flow between an image and itself: every pixel meets its own descriptor (score 1)."""
    mt = PaperNetworkMatcher(CPU, make_checkpoint(tmp_path / "m.pt", dx=0.0))
    a = _img(64, 64, 3)
    corr = mt.match_images(a, a)
    assert corr.valid.all()
    np.testing.assert_allclose(corr.score, 1.0, atol=1e-4)
    np.testing.assert_allclose(corr.target_xy, corr.grid.cell_centers_image(), atol=1e-4)
    # against another image the scores are lower somewhere
    assert mt.match_images(a, _img(64, 64, 4)).score.min() < 0.99


def test_frames_interface_equals_images(tmp_path):
    """correspondence(Frame, Frame) and descriptors(Frame) use the frames' images (lazily
    loaded) and give what the image-level calls give; build('paper_network') and the factory
    that reads the checkpoint give the same class."""
    ck = make_checkpoint(tmp_path / "m.pt", dx=3.0)
    mt = build("paper_network", CPU, checkpoint=ck)
    assert isinstance(mt, PaperNetworkMatcher)
    assert isinstance(network_matcher(ck, NetworkParams(device="cpu")), PaperNetworkMatcher)
    a, b = _img(40, 80, 5), _img(64, 64, 6)
    loads = []
    fa = Frame(None, None, None, image_source=lambda: loads.append(1) or a)
    fb = Frame(None, None, None, image_source=b)
    corr = mt.correspondence(fa, fb)
    np.testing.assert_array_equal(corr.target_xy, mt.match_images(a, b).target_xy)
    d, grid = mt.descriptors(fa)
    np.testing.assert_array_equal(d, mt.image_descriptors(a)[0])
    assert mt.descriptors(fa)[0] is d and loads == [1]
