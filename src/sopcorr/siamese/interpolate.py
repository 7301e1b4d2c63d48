"""Weight-space interpolation of a self-training round's network (``siamese.round_interpolation``).

A round r > 1 that continues round r − 1's weights (``siamese.round_start: previous``) trains them
further on round r's pseudo ground truth; its network is then the point

    θ_r = (1 − w) · θ_{r−1} + w · θ_r'        (θ_r' the weights the round's training ends with)

on the straight line between the weights it started from and the ones it trained (w =
``round_interpolation``; 1: the trained weights). This is the weight-space ensemble of WiSE-FT
(Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022) with its default w = 0.5:
both ends lie in one basin (one continues the other), so the midpoint is a network of its own,
not a mean of two unrelated ones. On the dev split it keeps what the round gains on the
categories it trained on and gives back part of what the round loses on a category it never saw
(docs/RESULTS.md, "Interpolating a round's weights").
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["interpolate_state", "interpolate_checkpoint"]


def interpolate_state(start: Mapping[str, torch.Tensor], trained: Mapping[str, torch.Tensor],
                      weight: float) -> dict[str, torch.Tensor]:
    """``(1 − weight) · start + weight · trained`` for every floating-point tensor of two state
    dicts of one network (same keys, same shapes); a tensor of any other dtype (a counter such as
    a batch norm's ``num_batches_tracked``) is the trained one's. Each result has the trained
    tensor's dtype and device. ValueError for a weight outside [0, 1]; CheckpointError when the
    two state dicts are not of one network."""
    if not 0.0 <= float(weight) <= 1.0:
        raise ValueError(f"interpolate_state: weight must lie in [0, 1], got {weight}")
    if set(start) != set(trained):
        diff = sorted(set(start) ^ set(trained))
        raise CheckpointError(f"weight interpolation: the two networks differ in their tensors ({', '.join(diff[:5])})")
    out: dict[str, torch.Tensor] = {}
    for key, t in trained.items():
        s = start[key]
        if tuple(s.shape) != tuple(t.shape):
            raise CheckpointError(f"weight interpolation: {key} is {tuple(s.shape)} in the start and "
                                  f"{tuple(t.shape)} in the trained network")
        if t.is_floating_point():
            s = s.to(device=t.device, dtype=t.dtype)
            out[key] = torch.lerp(s, t, float(weight))
        else:
            out[key] = t.clone()
    return out


def interpolate_checkpoint(trained_path: str | Path, start_path: str | Path, weight: float) -> None:
    """Replace the weights of the checkpoint at ``trained_path`` (written by a round's training)
    with their interpolation toward the checkpoint at ``start_path`` (the weights that training
    started from), in place and atomically; the checkpoint records
    ``round_interpolation = {"start": start_path, "weight": weight}``. Nothing changes for weight 1."""
    if float(weight) == 1.0:
        return
    trained = load_checkpoint(trained_path)
    start = load_checkpoint(start_path)
    trained["model"] = interpolate_state(start["model"], trained["model"], weight)
    trained["round_interpolation"] = {"start": str(start_path), "weight": float(weight)}
    save_checkpoint(trained_path, trained)
