"""The improved variant's matcher: raw features concatenated with the manifold embedding,
edge-aware neighbourhood consensus, a (piecewise) RANSAC affine location prior. The algorithm
is :func:`sopcorr.flow.geometric.geometric_correspondence` (see its module docstring).

As NC-Net's ``forward``, one correspondence is a sequence of named steps:
:meth:`GeometricMatcher.descriptors` (concatenate, normalise) ->
``geometric_correspondence`` (consensus descriptors -> mutual matches -> affine models ->
prior-weighted argmax).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from ..errors import ConfigError
from ..flow.geometric import PRIORS, geometric_correspondence
from ..geometry import DenseCorrespondence, FeatureGrid
from .base import Frame, Params

__all__ = ["GeometricParams", "GeometricMatcher", "concat_descriptors"]


#: the fields of GeometricParams that fit the location prior's affine models
PRIOR_FIELDS = ("prior", "max_models", "min_support", "bandwidth", "ransac_threshold", "ransac_iterations", "seed")


@dataclass(frozen=True)
class GeometricParams(Params):
    """Settings of :func:`~sopcorr.flow.geometric.geometric_correspondence` (the schema's
    ``flow.geometric`` keys describe each) plus embedding_weight (the embedding's share of the
    concatenated descriptor; 0: raw features alone) and seed (RANSAC)."""

    strength: float = 8.0
    consensus_radius: int = 1
    consensus_gate: float = 4.0
    prior: str = "piecewise"
    max_models: int = 3
    min_support: float = 0.15
    bandwidth: float = 0.1
    ransac_threshold: float = 0.08
    ransac_iterations: int = 300
    embedding_weight: float = 0.5
    seed: int = 0

    SCHEMA: ClassVar[dict[str, str]] = {
        **{k: f"flow.geometric.{k}" for k in (
            "strength", "consensus_radius", "consensus_gate", "prior", "max_models", "min_support",
            "bandwidth", "ransac_threshold", "ransac_iterations", "embedding_weight")},
        "seed": "seed",
    }

    def correspondence_kwargs(self) -> dict:
        """The keyword arguments of :func:`~sopcorr.flow.geometric.geometric_correspondence`
        (every field but ``embedding_weight``, which only builds the descriptor)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "embedding_weight"}

    def prior_kwargs(self) -> dict:
        """The keyword arguments of :func:`~sopcorr.flow.geometric.prior_target_cells` (the
        location prior's models: prior, max_models, min_support, bandwidth, RANSAC settings,
        seed)."""
        return {k: getattr(self, k) for k in PRIOR_FIELDS}

    def __post_init__(self):
        if self.prior not in PRIORS:
            raise ConfigError(f"config error: flow.geometric.prior: unknown prior {self.prior!r} "
                              f"(expected one of {', '.join(PRIORS)})")


def concat_descriptors(raw: np.ndarray, embedded: np.ndarray | None, weight: float) -> np.ndarray:
    """(H, W, C1) raw features and (H, W, C2) embedded features -> (H, W, C1 + C2): each block
    L2-normalised per cell, the embedding scaled by ``weight`` (its share of the cosine).
    ``embedded`` None or weight 0 returns the normalised raw features (H, W, C1)."""
    r = np.asarray(raw, dtype=np.float32)
    r = r / np.maximum(np.linalg.norm(r, axis=-1, keepdims=True), 1e-12)
    if embedded is None or weight <= 0:
        return r
    e = np.asarray(embedded, dtype=np.float32)
    e = e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
    return np.concatenate([r, np.float32(weight) * e], axis=-1)


class GeometricMatcher:
    """The geometric matcher over Frames (see GeometricParams)."""

    name = "geometric"
    params_class = GeometricParams

    def __init__(self, params: GeometricParams = GeometricParams()):
        self.params = params
        self._kw = params.correspondence_kwargs()

    def descriptors(self, frame: Frame) -> tuple[np.ndarray, FeatureGrid]:
        """((H, W, C [+ D]) float32 per-block normalised raw features [+ weighted embedding],
        grid); cached on the frame."""
        w = float(self.params.embedding_weight)

        def make():
            emb = frame.require("embedding") if w > 0 else None
            return concat_descriptors(frame.require("features"), emb, w)

        return frame.cached(("geometric.descriptors", w), make), frame.grid

    def consensus(self, frame: Frame):
        """The frame's consensus descriptors of :meth:`descriptors` in factored form
        (:func:`~sopcorr.flow.geometric.consensus_terms`), cached on the frame (an image is
        matched against many others)."""
        from ..flow.geometric import consensus_terms

        p = self.params
        key = ("geometric.consensus", float(p.embedding_weight), p.consensus_radius, p.consensus_gate)
        valid = frame.valid if frame.valid is not None else frame.grid.valid_mask()
        return frame.cached(key, lambda: consensus_terms(
            self.descriptors(frame)[0], np.asarray(valid, bool), p.consensus_radius, p.consensus_gate))

    def correspondence(self, src: Frame, tgt: Frame) -> DenseCorrespondence:
        ds, gs = self.descriptors(src)
        dt, gt = self.descriptors(tgt)
        return geometric_correspondence(ds, dt, gs, gt, src.valid, tgt.valid, **self._kw,
                                        consensus_src=self.consensus(src), consensus_tgt=self.consensus(tgt))
