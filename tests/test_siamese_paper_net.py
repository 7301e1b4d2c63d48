import numpy as np
import pytest
import torch

from siamese_helpers import tiny_model
from sopcorr.siamese.paper.net import ModelSpec, SiameseFlowNet, build_model, truncated_euclidean_loss


def test_tiny_output_shapes_and_zero_init():
    m = tiny_model(32)
    assert m.strides == [2, 4]
    x = torch.randn(3, 3, 32, 32)
    y = torch.randn(3, 3, 32, 32)
    f = m(x, y)
    assert f.shape == (3, 2, 32, 32)
    assert torch.all(f == 0)  # zero-initialised head: untrained net predicts no motion
    d = m.features(x)
    assert d.shape == (3, 20, 16, 16)
    assert torch.allclose(d.norm(dim=1), torch.ones(3, 16, 16), atol=1e-4)


def test_efficientnet_encoder_shapes():
    m = build_model(ModelSpec("efficientnet_lite0", 64))
    assert m.strides == [8, 16, 32]
    m.set_mode(True, freeze_encoder=True)
    assert not any(p.requires_grad for p in m.encoder.parameters())
    x = torch.randn(2, 3, 64, 64)
    f = m(x, x.flip(0))
    assert f.shape == (2, 2, 64, 64)
    assert m.features(x).shape == (2, 40 + 112 + 192, 8, 8)
    # one step moves the decoder but not the frozen encoder
    enc0 = {k: v.clone() for k, v in m.encoder.state_dict().items()}
    opt = torch.optim.SGD(list(m.trainable_parameters(True)), lr=0.1)
    loss = truncated_euclidean_loss(f, torch.ones_like(f), torch.ones(2, 64, 64, dtype=torch.bool))
    loss.backward()
    opt.step()
    for k, v in m.encoder.state_dict().items():
        assert torch.equal(v, enc0[k]), k
    assert m.head.bias.abs().sum() > 0


def test_truncated_loss_known_answers():
    pred = torch.zeros(1, 2, 1, 4, requires_grad=True)
    target = torch.tensor([[[[1.0, 0.0, 10.0, 3.0]], [[0.0, 2.0, 0.0, 4.0]]]])  # d2 = 1, 4, 100, 25
    valid = torch.tensor([[[True, True, True, False]]])
    # T2 defaults to the long edge (4 pixels): 1 + min(4,4) + min(100,4); the invalid pixel is ignored
    assert truncated_euclidean_loss(pred, target, valid, reduction="sum").item() == pytest.approx(9.0)
    assert truncated_euclidean_loss(pred, target, valid, T2=64.0, reduction="sum").item() == pytest.approx(69.0)
    assert truncated_euclidean_loss(pred, target, valid, T2=64.0).item() == pytest.approx(69.0 / 3)
    loss = truncated_euclidean_loss(pred, target, valid, T2=64.0, reduction="sum")
    loss.backward()
    g = pred.grad[0, :, 0]
    assert torch.allclose(g[:, 0], torch.tensor([-2.0, 0.0]))  # d/dpred of (pred - t)^2
    assert torch.all(g[:, 2] == 0)  # truncated: no gradient
    assert torch.all(g[:, 3] == 0)  # invalid: no gradient
    assert truncated_euclidean_loss(pred, target, torch.zeros_like(valid)).item() == 0.0


def test_truncation_settings():
    from sopcorr.errors import SopcorrError
    from sopcorr.siamese.settings import truncation_T2

    assert truncation_T2("paper", 128) == 128.0
    assert truncation_T2(0.25, 128) == 32.0 ** 2
    with pytest.raises(SopcorrError, match="siamese truncation"):
        truncation_T2("half", 128)
