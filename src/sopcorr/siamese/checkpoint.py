"""Checkpoint I/O of both Siamese architectures.

A checkpoint is a ``torch.save`` dict written atomically: ``model`` (state dict), ``spec`` (the
network's record: :class:`~sopcorr.siamese.model.ModelSpec` for ``architecture: paper``,
:class:`~sopcorr.siamese.correlation.NetworkSpec` for ``architecture: correlation``; a spec
without ``architecture`` is the paper's), ``step``, ``config``, ``history`` and, in resumable
states, ``optimizer``, ``scheduler``, ``scaler``, ``rng``.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path
from .model import CheckpointError, ModelSpec


def rng_state() -> dict:
    """torch / numpy / python (/ cuda) generator states."""
    st = dict(torch=torch.get_rng_state(), numpy=np.random.get_state(), python=random.getstate())
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(path: str | Path, obj: dict) -> None:
    """``torch.save`` via a temporary file renamed into place."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint dict; CheckpointError naming the file when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ck, dict) or "model" not in ck or "spec" not in ck:
        raise CheckpointError(f"{path}: not a sopcorr Siamese checkpoint (no 'model'/'spec' entries)")
    return ck


def architecture_of(ck: dict) -> str:
    """'paper' or 'correlation': the architecture a checkpoint dict records."""
    spec = ck.get("spec") or {}
    return str(spec.get("architecture", "paper"))


def spec_from_checkpoint(ck: dict, path: str | Path = "<checkpoint>"):
    """The checkpoint's ModelSpec (paper) or NetworkSpec (correlation)."""
    arch = architecture_of(ck)
    try:
        if arch == "correlation":
            from .correlation import NetworkSpec

            return NetworkSpec.from_dict(ck["spec"])
        if arch == "paper":
            return ModelSpec.from_dict(ck["spec"])
    except (TypeError, KeyError) as exc:
        raise CheckpointError(f"{path}: unreadable network record ({exc})") from None
    raise CheckpointError(f"{path}: unknown architecture {arch!r} (expected paper or correlation)")


def model_from_checkpoint(ck: dict, device="cpu", path: str | Path = "<checkpoint>", with_encoder: bool = True):
    """Rebuild the network recorded in a checkpoint dict and load its weights.

    paper: :class:`~sopcorr.siamese.model.SiameseFlowNet` (encoder weights from the checkpoint).
    correlation: :class:`~sopcorr.siamese.correlation.CorrelationNet`; its encoder comes from the
    backbone registry (ImageNet weights) unless the checkpoint carries trained encoder weights;
    ``with_encoder=False`` builds the head only (training on cached grids)."""
    spec = spec_from_checkpoint(ck, path)
    state = ck["model"]
    if isinstance(spec, ModelSpec):
        from .model import build_model

        model = build_model(spec, device=device, pretrained=False)
        strict = True
    else:
        from .correlation import build_network

        has_encoder = any(k.startswith("encoder.") for k in state)
        model = build_network(spec, device=device, with_encoder=with_encoder, pretrained=not has_encoder)
        if not with_encoder:
            state = {k: v for k, v in state.items() if not k.startswith("encoder.")}
        strict = has_encoder or not with_encoder
    try:
        missing, unexpected = model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the recorded network ({str(exc).splitlines()[0]})") from None
    bad = [k for k in missing if not k.startswith("encoder.")] + list(unexpected)
    if bad:
        raise CheckpointError(f"{path}: weights do not fit the recorded network (keys {bad[:3]})")
    return model
