"""Nearest-neighbour matching (cosine) on a frame's raw features or its manifold embedding,
optionally label-constrained and mutual: the paper's pseudo ground truth and the ``nn_*``
rows. The algorithm is :func:`sopcorr.flow.nn.nearest_neighbour`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import ConfigError
from ..flow.nn import nearest_neighbour
from ..geometry import DenseCorrespondence, FeatureGrid
from .base import Frame, Params

__all__ = ["NNParams", "NearestNeighbourMatcher"]

DESCRIPTORS = ("features", "embedding")


@dataclass(frozen=True)
class NNParams(Params):
    """descriptor: the Frame field matched ('features' raw backbone features, 'embedding' the
    manifold embedding); mutual: keep only mutual nearest neighbours; labels: a cell matches
    only cells of its own SOP label (the frames must carry labels); refine: 'none' (cell
    centres) or 'softargmax' (sub-cell, softmax(sim / temperature) over the 3x3 cells around
    the argmax); device: 'auto' | 'cpu' | 'cuda' (speed only)."""

    descriptor: str = "features"
    mutual: bool = True
    labels: bool = False
    refine: str = "none"
    temperature: float = 0.02
    device: str = "auto"

    SCHEMA: ClassVar[dict[str, str]] = {"mutual": "flow.mutual", "refine": "flow.refine",
                                        "device": "flow.device"}

    def __post_init__(self):
        if self.descriptor not in DESCRIPTORS:
            raise ConfigError(f"config error: nn descriptor must be one of {DESCRIPTORS}, got {self.descriptor!r}")
        if self.refine not in ("none", "softargmax"):
            raise ConfigError(f"config error: flow.refine: must be 'none' or 'softargmax', got {self.refine!r}")


class NearestNeighbourMatcher:
    """Dense nearest neighbours from the source frame to the target frame (see NNParams)."""

    name = "nn"
    params_class = NNParams

    def __init__(self, params: NNParams = NNParams()):
        self.params = params

    def descriptors(self, frame: Frame) -> tuple[np.ndarray, FeatureGrid]:
        """((H, W, D) float32 matched descriptor (not normalised), its grid)."""
        return frame.require(self.params.descriptor), frame.grid

    def correspondence(self, src: Frame, tgt: Frame) -> DenseCorrespondence:
        p = self.params
        kw = {}
        if p.labels:
            kw = dict(labels_src=src.require("labels"), labels_tgt=tgt.require("labels"))
        return nearest_neighbour(src.require(p.descriptor), tgt.require(p.descriptor), src.grid, tgt.grid,
                                 src.valid, tgt.valid, mutual=p.mutual, refine=p.refine,
                                 temperature=p.temperature, device=p.device, **kw)
