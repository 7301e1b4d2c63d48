"""Weight-space interpolation of a self-training round's network (sopcorr.siamese.interpolate,
siamese.round_interpolation): known answers on small state dicts, the checks that the two are one
network, the checkpoint rewritten in place, and the config's afresh / previous rule."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sopcorr.errors import ConfigError
from sopcorr.siamese.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from sopcorr.siamese.interpolate import interpolate_checkpoint, interpolate_state


CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


def _state(w, b, n):
    return {"conv.weight": torch.full((2, 3), float(w)), "conv.bias": torch.tensor([b, -b], dtype=torch.float64),
            "bn.num_batches_tracked": torch.tensor(n)}


def test_interpolate_state_known_answers():
    start, trained = _state(0.0, 1.0, 3), _state(2.0, 3.0, 7)
    out = interpolate_state(start, trained, 0.25)
    assert torch.equal(out["conv.weight"], torch.full((2, 3), 0.5))
    assert out["conv.bias"].dtype == torch.float64 and torch.allclose(out["conv.bias"], torch.tensor([1.5, -1.5],
                                                                                                     dtype=torch.float64))
    assert out["bn.num_batches_tracked"].item() == 7  # a counter is the trained network's
    for w, ref in ((0.0, start), (1.0, trained)):  # the ends are the two networks
        got = interpolate_state(start, trained, w)
        assert all(torch.equal(got[k], ref[k]) for k in ("conv.weight", "conv.bias"))
    assert torch.equal(start["conv.weight"], torch.zeros(2, 3))  # the inputs are left as they were


def test_interpolate_state_needs_one_network():
    start, trained = _state(0.0, 1.0, 3), _state(2.0, 3.0, 7)
    with pytest.raises(CheckpointError, match="differ in their tensors.*extra"):
        interpolate_state(start, {**trained, "extra": torch.zeros(1)}, 0.5)
    with pytest.raises(CheckpointError, match=r"conv.weight is \(2, 3\) in the start and \(3, 2\)"):
        interpolate_state(start, {**trained, "conv.weight": torch.zeros(3, 2)}, 0.5)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        interpolate_state(start, trained, 1.5)


def test_interpolate_checkpoint_in_place(tmp_path):
    spec = {"architecture": "correlation"}
    save_checkpoint(tmp_path / "start.pt", {"model": _state(0.0, 1.0, 3), "spec": spec, "step": 300})
    save_checkpoint(tmp_path / "trained.pt", {"model": _state(4.0, 3.0, 7), "spec": spec, "step": 300,
                                              "history": [1.0, 0.5]})
    before = (tmp_path / "trained.pt").read_bytes()
    interpolate_checkpoint(tmp_path / "trained.pt", tmp_path / "start.pt", 1.0)
    assert (tmp_path / "trained.pt").read_bytes() == before  # 1: nothing changes
    interpolate_checkpoint(tmp_path / "trained.pt", tmp_path / "start.pt", 0.5)
    ck = load_checkpoint(tmp_path / "trained.pt")
    assert torch.equal(ck["model"]["conv.weight"], torch.full((2, 3), 2.0))
    assert ck["history"] == [1.0, 0.5] and ck["spec"] == spec
    assert ck["round_interpolation"] == {"start": str(tmp_path / "start.pt"), "weight": 0.5}
    with pytest.raises(CheckpointError, match="missing.pt: checkpoint not found"):
        interpolate_checkpoint(tmp_path / "trained.pt", tmp_path / "missing.pt", 0.5)


def test_config_interpolation_needs_previous_weights():
    from sopcorr.config import load_config

    over = {"siamese": {"rounds": 2, "round_start": "afresh"}}
    with pytest.raises(ConfigError, match="siamese.round_interpolation: 0.5 .* needs siamese.round_start: previous"):
        load_config(CONFIG, overrides=over)
    cfg = load_config(CONFIG, overrides={"siamese": {**over["siamese"], "round_interpolation": 1}})
    assert cfg["siamese"]["round_interpolation"] == 1
    assert load_config(CONFIG)["siamese"]["round_interpolation"] == 0.5  # the schema's default
    load_config(CONFIG, overrides={"siamese": {"round_start": "afresh"}})  # one round: unused
    with pytest.raises(ConfigError, match="siamese.round_interpolation"):
        load_config(CONFIG, overrides={"siamese": {"round_interpolation": 0}})
