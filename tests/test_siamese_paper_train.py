"""Training loop: schedule, checkpoints, resume after a kill = uninterrupted run, loss curve."""
import pytest
import torch

from siamese_helpers import TensorPairs, tiny_model
from sopcorr.siamese.checkpoint import load_checkpoint, model_from_checkpoint
from sopcorr.siamese.loop import lr_lambda
from sopcorr.siamese.paper.train import PaperSettings, train
from sopcorr.siamese.plots import plot_loss

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
    return PaperSettings(**base)


def test_schedule_warmup_then_cosine():
    f = lr_lambda(PaperSettings(steps=110, warmup=10, min_lr_ratio=0.1))
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


def test_state_of_torch_optim_is_ignored(tmp_path, caplog):
    """A state file written when the loop used torch.optim (same settings) is not resumed:
    the run starts over and equals an uninterrupted one."""
    from sopcorr.siamese.checkpoint import save_checkpoint

    data = _data()
    full = tmp_path / "full.pt"
    h_full = train(tiny_model(S), data, _cfg(), full, progress=False)
    out = tmp_path / "m.pt"
    train(tiny_model(S), data, _cfg(), out, progress=False, stop_after=2)
    state = out.with_name(out.name + ".state.pt")
    st = load_checkpoint(state)
    st["optimizer"] = torch.optim.SGD(tiny_model(S).parameters(), lr=0.1).state_dict()
    save_checkpoint(state, st)
    with caplog.at_level("WARNING", logger="sopcorr.siamese"):
        h = train(tiny_model(S), data, _cfg(), out, progress=False)
    assert h == h_full and "torch.optim" in caplog.text


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


# ------------------------------------------------------------------ pipeline artifacts


def _pipeline(tmp_path, S=32):
    """A category of 3 images (splits train, train, test) and a flow store of 3 pairs whose
    pseudo ground truth is the shift (+2, 0) image pixels."""
    import json

    import numpy as np
    from PIL import Image

    from sopcorr.flow.pseudo import write_flow_store
    from sopcorr.geometry import FeatureGrid, Letterbox

    rng = np.random.default_rng(0)
    d = tmp_path / "data"
    (d / "img").mkdir(parents=True)
    insts = []
    for k, split in enumerate(["train", "train", "test"]):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(d / "img" / f"{k}.png")
        insts.append({"id": f"cat/{k}", "image": f"img/{k}.png", "category": "cat", "bbox": [0, 0, 39, 29],
                      "keypoints": {"a": [10.0 + k, 12.0, 1], "b": [30.0, 20.0, k % 2]}, "split": split})
    (d / "instances.json").write_text(json.dumps({"name": "t", "categories": {"cat": {"keypoints": ["a", "b"]}},
                                                  "instances": insts}))
    grid = FeatureGrid(Letterbox(30, 40, S), 8)
    txy = grid.cell_centers_image() + [2.0, 0.0]
    P = 3
    write_flow_store(tmp_path / "flow.zarr", [(0, 1), (1, 2), (2, 0)], np.repeat(txy[None], P, 0).astype(np.float32),
                     np.repeat(grid.valid_mask()[None], P, 0), np.ones((P, 4, 4), np.float32),
                     [i["id"] for i in insts], [[30, 40]] * 3, S, 8)
    return [(tmp_path / "flow.zarr", d / "instances.json")]


def test_store_pairs_reads_flows_images_keypoints(tmp_path):
    from sopcorr.siamese.paper.data import StorePairs

    src = _pipeline(tmp_path)
    allp = StorePairs(src, 32, (0.5,) * 3, (0.25,) * 3)
    assert len(allp) == 3
    tr = StorePairs(src, 32, (0.5,) * 3, (0.25,) * 3, split="train", keypoints=True)
    assert len(tr) == 1 and tr.items[0][2:] == ("cat/0", "cat/1")
    it = tr.get(0)
    assert it["src"].shape == (3, 32, 32) and it["flow"].shape == (2, 32, 32) and it["valid"].shape == (32, 32)
    v = it["valid"]
    assert v.sum() > 100
    # a shift of 2 image pixels is 2 * 32/40 = 1.6 input pixels (between the cell centres; the
    # pseudo flow is extrapolated as constant target coordinates beyond them)
    inner = it["flow"][:, 4:20, 4:28]
    assert v[4:20, 4:28].all()
    assert torch.allclose(inner[0], torch.full_like(inner[0], 1.6), atol=1e-4)
    assert torch.allclose(inner[1], torch.zeros_like(inner[1]), atol=1e-4)
    # keypoint 'a' of image 0 at x = 10 -> input (10.5 * 0.8 - 0.5); 'b' is invisible in image 0
    assert it["kp_src"][0, 0].item() == pytest.approx(10.5 * 0.8 - 0.5)
    assert it["kp_vis"].tolist() == [True, False]


def test_run_training_then_finetune(tmp_path):
    from sopcorr.config import validate_config
    from sopcorr.siamese.stage import run_training

    src = [(None, f, i) for f, i in _pipeline(tmp_path)]  # the paper's network reads no feature store
    cfg = validate_config({"siamese": {"architecture": "paper", "keypoint_supervision": True, "device": "cpu",
                                       "freeze_encoder": False,
                                       "paper": {"input_size": 32, "steps": 2, "finetune_steps": 2, "batch_size": 2}}})
    sec = cfg["siamese"]
    h = run_training(src, sec, {"name": "tiny_test"}, 0, tmp_path / "s" / "model.pt", tmp_path / "s" / "loss.png",
                     progress=False)
    assert len(h) == 2 and (tmp_path / "s" / "loss.png").is_file()
    h2 = run_training(src, sec, {"name": "tiny_test"}, 0, tmp_path / "s" / "ft.pt", tmp_path / "s" / "ft.png",
                      init_checkpoint=tmp_path / "s" / "model.pt", progress=False)
    assert len(h2) == 2
    a = load_checkpoint(tmp_path / "s" / "model.pt")
    b = load_checkpoint(tmp_path / "s" / "ft.pt")
    assert b["config"]["train"]["keypoint_weight"] == 1.0 and a["config"]["train"]["keypoint_weight"] == 0.0
    assert any(not torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    from sopcorr.siamese.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="backbone 'tiny_test'"):
        run_training(src, sec, {"name": "vgg16"}, 0, tmp_path / "s" / "x.pt", None,
                     init_checkpoint=tmp_path / "s" / "model.pt", progress=False)
