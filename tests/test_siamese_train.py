"""Training loop: schedule, checkpoints, resume after a kill = uninterrupted run, loss curve."""
import pytest
import torch

from sopcorr.siamese.train import (TensorPairs, TrainConfig, load_checkpoint, lr_lambda, model_from_checkpoint,
                                   plot_loss, train)
from test_siamese_stub import tiny_model

S = 32


def _data(n_img=4, n_pairs=5, keypoints=False):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n_img, 3, S, S, generator=g)
    pairs = torch.randint(n_img, (n_pairs, 2), generator=g)
    flows = torch.randn(n_pairs, 2, S, S, generator=g) * 3
    valid = torch.rand(n_pairs, S, S, generator=g) > 0.3
    kp = None
    if keypoints:
        kp = torch.cat([torch.rand(n_img, 3, 2, generator=g) * (S - 1), torch.ones(n_img, 3, 1)], -1)
        kp[0, 2, 2] = 0  # one invisible keypoint
    return TensorPairs(images, pairs, flows, valid, kp)


def _cfg(**kw):
    base = dict(steps=3, batch_size=2, lr=1e-2, checkpoint_every=100, seed=7, freeze_encoder=False, warmup=1)
    base.update(kw)
    return TrainConfig(**base)


def test_schedule_warmup_then_cosine():
    f = lr_lambda(TrainConfig(steps=110, warmup=10, min_lr_ratio=0.1))
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55)
    assert f(110) == pytest.approx(0.1)


def test_resume_after_kill_equals_uninterrupted(tmp_path):
    data = _data()
    full = tmp_path / "full.pt"
    h_full = train(tiny_model(S), data, _cfg(), full, progress=False)
    killed = tmp_path / "killed.pt"
    h1 = train(tiny_model(S), data, _cfg(), killed, progress=False, stop_after=2)
    state = killed.with_name(killed.name + ".state.pt")
    assert state.is_file() and not killed.exists() and len(h1) == 2
    st = load_checkpoint(state)
    assert st["step"] == 2 and {"optimizer", "scheduler", "rng", "config", "scaler"} <= set(st)
    # a fresh process would rebuild the model from scratch: different init, then resume
    h2 = train(tiny_model(S, seed=99), data, _cfg(), killed, progress=False)
    assert killed.is_file() and not state.exists()
    assert h2 == h_full
    a, b = load_checkpoint(full), load_checkpoint(killed)
    assert a["step"] == b["step"] == 3
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    # and training did move the weights
    m0 = tiny_model(S).state_dict()
    assert any(not torch.equal(m0[k], a["model"][k]) for k in m0)


def test_state_with_other_settings_is_ignored(tmp_path):
    data = _data()
    out = tmp_path / "m.pt"
    train(tiny_model(S), data, _cfg(), out, progress=False, stop_after=2)
    h = train(tiny_model(S), data, _cfg(lr=5e-3), out, progress=False)
    assert len(h) == 3  # started from step 0, not resumed


def test_frozen_encoder_and_keypoint_term_and_reload(tmp_path):
    data = _data(keypoints=True)
    out = tmp_path / "m.pt"
    model = tiny_model(S)
    enc0 = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    hist = train(model, data, _cfg(freeze_encoder=True, keypoint_weight=1.0), out, progress=False)
    assert all(torch.isfinite(torch.tensor(hist)))
    ck = load_checkpoint(out)
    for k, v in enc0.items():
        assert torch.equal(ck["model"]["encoder." + k], v), k
    m2 = model_from_checkpoint(ck)
    x = torch.randn(1, 3, S, S)
    model.eval()
    m2.eval()
    assert torch.allclose(model(x, x), m2(x, x))
    plot_loss(hist, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").stat().st_size > 1000
