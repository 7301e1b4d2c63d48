"""The geometric matcher on the learned Siamese network's descriptors (method
``ours_network_geometric``): the network's L2-normalised dense descriptors replace the teacher's
raw features + embedding inside :func:`~sopcorr.flow.geometric.geometric_correspondence`
(edge-aware consensus, mutual matches, the RANSAC affine location prior, prior-weighted argmax).

Descriptors ``(H, W, D)`` come from the frame's stored raw feature grid through the head
(:meth:`~sopcorr.matchers.network.NetworkMatcher.describe`) when that grid is the network's
encoder output: a checkpoint whose encoder was not trained end to end, and a grid of the
network's size. Otherwise (an end-to-end checkpoint, a frame without features) they come from
the frame's image through the whole network, on the network's own grid. A checkpoint of the
paper's architecture (``siamese.architecture: paper``) gives its fused encoder descriptor
(:meth:`~sopcorr.matchers.siamese.SiameseMatcher.image_descriptors`) from the image.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..flow.geometric import geometric_correspondence
from ..geometry import DenseCorrespondence, FeatureGrid
from .base import Frame
from .geometric import GeometricParams

__all__ = ["NetworkGeometricMatcher"]


class NetworkGeometricMatcher:
    """params: GeometricParams (``embedding_weight`` is not used: the descriptor is the
    network's); checkpoint: ``siamese/<variant>/model.pt`` / ``finetuned.pt`` of either
    architecture; device: 'auto' | 'cpu' | 'cuda'."""

    name = "network_geometric"
    params_class = GeometricParams

    def __init__(self, params: GeometricParams = GeometricParams(), checkpoint: str | Path | None = None,
                 device: str = "auto"):
        from .siamese import SiameseMatcher, SiameseParams

        if checkpoint is None:
            raise TypeError("NetworkGeometricMatcher needs a checkpoint")
        self.siamese = SiameseMatcher(checkpoint, SiameseParams(device=device))
        #: the correlation network (None for the paper's architecture)
        self.network = self.siamese.network
        self.params = params
        p = params
        self._kw = dict(strength=p.strength, consensus_radius=p.consensus_radius,
                        consensus_gate=p.consensus_gate, prior=p.prior, max_models=p.max_models,
                        min_support=p.min_support, bandwidth=p.bandwidth,
                        ransac_threshold=p.ransac_threshold, ransac_iterations=p.ransac_iterations,
                        seed=p.seed)

    def _from_store(self, frame: Frame) -> bool:
        if self.network is None:
            return False
        spec = self.network.spec
        if frame.features is None or frame.grid is None or bool(getattr(spec, "encoder_trained", False)):
            return False
        g = spec.grid_size
        return (frame.grid.stride == spec.stride and frame.features.shape[:2] == (g, g)
                and frame.features.shape[-1] == spec.in_channels)

    def descriptors(self, frame: Frame) -> tuple[np.ndarray, FeatureGrid]:
        """((H, W, D) float32 learned descriptors, FeatureGrid); cached on the frame."""
        return self._described(frame)[:2]

    def _described(self, frame: Frame) -> tuple[np.ndarray, FeatureGrid, np.ndarray]:
        def make():
            if self._from_store(frame):
                valid = frame.valid if frame.valid is not None else frame.grid.valid_mask()
                return self.network.describe(frame.features), frame.grid, np.asarray(valid, bool)
            d, grid = self.siamese.image_descriptors(frame.image)
            return d, grid, grid.valid_mask()

        return frame.cached(("network_geometric.descriptors", str(self.siamese.path)), make)

    def correspondence(self, src: Frame, tgt: Frame) -> DenseCorrespondence:
        ds, gs, vs = self._described(src)
        dt, gt, vt = self._described(tgt)
        return geometric_correspondence(ds, dt, gs, gt, vs, vt, **self._kw)
