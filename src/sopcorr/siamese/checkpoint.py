"""The checkpoint format both Siamese architectures share.

A checkpoint is a ``torch.save`` dict written atomically: ``model`` (state dict), ``spec`` (the
network's record: :class:`~sopcorr.siamese.paper.net.ModelSpec` for ``architecture: paper``,
:class:`~sopcorr.siamese.correlation.net.NetworkSpec` for ``architecture: correlation``; a spec
without ``architecture`` is the paper's), ``step``, ``config``, ``history`` and, in resumable
states and final checkpoints of the loop, ``optimizer``, ``scheduler``, ``scaler``, ``rng``.
The format is the one the project has written since the correlation network arrived: files
written before the architectures became packages load unchanged (tests/test_checkpoints.py).

:func:`read_checkpoint` reads a file once into a :class:`Checkpoint` (its architecture and
spec); :func:`model_from_checkpoint` rebuilds the recorded network through its architecture's
``net`` module (:data:`NETS`).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SopcorrError
from ..io import atomic_path
from .settings import ARCHITECTURES


class CheckpointError(SopcorrError):
    """A Siamese checkpoint is missing, unreadable or does not fit the request."""


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


def _paper_net():
    from .paper import net

    return net


def _correlation_net():
    from .correlation import net

    return net


#: architecture -> its network module, which offers ``SPEC`` (the spec class, ``from_dict``) and
#: ``model_for_state(spec, state, device, with_encoder) -> (model, state, strict)``
NETS = {"paper": _paper_net, "correlation": _correlation_net}


def spec_from_checkpoint(ck: dict, path: str | Path = "<checkpoint>"):
    """The checkpoint's ModelSpec (paper) or NetworkSpec (correlation)."""
    arch = architecture_of(ck)
    if arch not in NETS:
        raise CheckpointError(f"{path}: unknown architecture {arch!r} (expected {' or '.join(ARCHITECTURES)})")
    try:
        return NETS[arch]().SPEC.from_dict(ck["spec"])
    except (TypeError, KeyError) as exc:
        raise CheckpointError(f"{path}: unreadable network record ({exc})") from None


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read once: its file, the dict, the architecture and the network's spec."""

    path: Path
    data: dict
    architecture: str
    spec: Any


def read_checkpoint(path: str | Path) -> Checkpoint:
    """:func:`load_checkpoint` and the record it holds (CheckpointError naming the file)."""
    ck = load_checkpoint(path)
    return Checkpoint(Path(path), ck, architecture_of(ck), spec_from_checkpoint(ck, path))


def model_from_checkpoint(ck: dict | Checkpoint, device="cpu", path: str | Path = "<checkpoint>",
                          with_encoder: bool = True):
    """Rebuild the network recorded in a checkpoint and load its weights.

    paper: :class:`~sopcorr.siamese.paper.net.SiameseFlowNet` (encoder weights from the checkpoint).
    correlation: :class:`~sopcorr.siamese.correlation.net.CorrelationNet`; its encoder comes from
    the backbone registry (ImageNet weights) unless the checkpoint carries trained encoder
    weights; ``with_encoder=False`` builds the head only (training on cached grids)."""
    if isinstance(ck, Checkpoint):
        path, spec, arch, ck = ck.path, ck.spec, ck.architecture, ck.data
    else:
        spec, arch = spec_from_checkpoint(ck, path), architecture_of(ck)
    model, state, strict = NETS[arch]().model_for_state(spec, ck["model"], device, with_encoder)
    try:
        missing, unexpected = model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the recorded network ({str(exc).splitlines()[0]})") from None
    bad = [k for k in missing if not k.startswith("encoder.")] + list(unexpected)
    if bad:
        raise CheckpointError(f"{path}: weights do not fit the recorded network (keys {bad[:3]})")
    return model
