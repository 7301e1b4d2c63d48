"""The SIFT-flow-style optimiser (:func:`sopcorr.flow.siftflow.siftflow_correspondence`) on
dense SIFT descriptors sampled at the feature grid's cell centres (the ``siftflow`` rows), on
the raw backbone features (``convflow``), or on the manifold embedding (the paper variant's
pseudo ground truth with ``flow.pseudo_method: siftflow``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import ConfigError
from ..flow.dsift import dense_sift
from ..flow.siftflow import siftflow_correspondence
from ..geometry import DenseCorrespondence, FeatureGrid
from .base import Frame, Params

__all__ = ["SiftFlowParams", "SiftFlowMatcher", "dense_sift_on_grid"]

DESCRIPTORS = ("sift", "features", "embedding")


@dataclass(frozen=True)
class SiftFlowParams(Params):
    """descriptor: 'sift' (dense SIFT of ``sift_radius`` px at the cell centres), 'features'
    (raw backbone features) or 'embedding'; the optimiser's settings are the schema's
    ``flow.siftflow_*`` keys (docs/FLOW.md)."""

    descriptor: str = "sift"
    sift_radius: float = 20
    levels: int = 3
    iterations: int = 10
    window: int = 4
    fine_window: int | None = None
    alpha: float = 0.01
    d: float = 0.1
    eta: float = 0.001
    data_trunc: float = 0.8
    schedule: str = "parallel"

    SCHEMA: ClassVar[dict[str, str]] = {
        "sift_radius": "evaluate.siftflow_radius",
        **{k: f"flow.siftflow_{k}" for k in ("levels", "iterations", "window", "fine_window", "alpha",
                                             "d", "eta", "data_trunc", "schedule")},
    }

    def __post_init__(self):
        if self.descriptor not in DESCRIPTORS:
            raise ConfigError(f"config error: siftflow descriptor must be one of {DESCRIPTORS}, "
                              f"got {self.descriptor!r}")

    def optimiser(self) -> dict:
        """Keyword arguments of :func:`sopcorr.flow.siftflow.siftflow`."""
        return dict(levels=self.levels, iterations=self.iterations, window=self.window,
                    fine_window=self.fine_window, alpha=self.alpha, d=self.d, eta=self.eta,
                    data_trunc=self.data_trunc, schedule=self.schedule)


def dense_sift_on_grid(image: np.ndarray, grid: FeatureGrid, radius: float) -> np.ndarray:
    """(H, W, 128) L2-normalised OpenCV SIFT descriptors of ``image`` (uint8 (h, w, 3)) at the
    cell centres of ``grid`` (image coordinates) with support radius ``radius`` px."""
    centres = grid.cell_centers_image().reshape(-1, 2)
    if len(centres) == 0:
        d = np.zeros((0, 128), np.float32)
    else:
        d = dense_sift(image, radius, points=centres).astype(np.float32)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    h, w = grid.shape
    return d.reshape(h, w, -1)


class SiftFlowMatcher:
    """SIFT flow on the descriptor of SiftFlowParams.descriptor."""

    name = "siftflow"
    params_class = SiftFlowParams

    def __init__(self, params: SiftFlowParams = SiftFlowParams()):
        self.params = params
        self._opt = params.optimiser()

    def descriptors(self, frame: Frame) -> tuple[np.ndarray, FeatureGrid]:
        """((H, W, D) float32 descriptor the optimiser matches, the frame's grid); SIFT is
        computed once per frame and radius."""
        p = self.params
        if p.descriptor == "sift":
            d = frame.cached(("dense_sift", float(p.sift_radius)),
                             lambda: dense_sift_on_grid(frame.image, frame.grid, float(p.sift_radius)))
        else:
            d = frame.require(p.descriptor)
        return d, frame.grid

    def correspondence(self, src: Frame, tgt: Frame) -> DenseCorrespondence:
        ds, gs = self.descriptors(src)
        dt, gt = self.descriptors(tgt)
        return siftflow_correspondence(ds, dt, gs, gt, src.valid, tgt.valid, **self._opt).correspondence
