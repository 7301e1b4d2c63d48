"""The geometric matcher on the learned Siamese network's descriptors (method
``ours_network_geometric``): the network's L2-normalised dense descriptors replace the teacher's
raw features + embedding in the geometric matcher (:mod:`sopcorr.flow.geometric`: edge-aware
consensus, mutual matches, the RANSAC affine location prior).

``readout``:

* ``'soft'`` (default, the correlation network): the prior is added to the network's own
  correlation of the learned descriptors, ``corr - strength * d^2 / side^2``, and read out as
  the network reads out its correlation, by its kernel soft-argmax (its temperature and kernel
  sigma), with bilinear transfer: the network's read-out with the geometric prior.
* ``'argmax'``: :func:`~sopcorr.flow.geometric.geometric_correspondence` on the learned
  descriptors (prior-weighted arg-max of the consensus similarity), as the teacher does on raw
  features + embedding; the paper's architecture always uses it.

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
import torch

from ..flow.geometric import geometric_correspondence
from ..geometry import DenseCorrespondence, FeatureGrid
from .base import Frame
from .geometric import GeometricParams

__all__ = ["NetworkGeometricMatcher"]


class NetworkGeometricMatcher:
    """params: GeometricParams (``embedding_weight`` is not used: the descriptor is the
    network's); checkpoint: ``siamese/<variant>/model.pt`` / ``finetuned.pt`` of either
    architecture; device: 'auto' | 'cpu' | 'cuda'; siamese: the network's SiameseParams
    (device, and the run it is evaluated in: backbone, input size), overriding ``device``."""

    name = "network_geometric"
    params_class = GeometricParams

    def __init__(self, params: GeometricParams = GeometricParams(), checkpoint: str | Path | None = None,
                 device: str = "auto", readout: str = "soft", siamese=None):
        from .siamese import SiameseMatcher, SiameseParams

        if checkpoint is None:
            raise TypeError("NetworkGeometricMatcher needs a checkpoint")
        self.siamese = SiameseMatcher(checkpoint, siamese if siamese is not None else SiameseParams(device=device))
        #: the correlation network (None for the paper's architecture)
        self.network = self.siamese.network
        if readout not in ("soft", "argmax"):
            raise ValueError(f"readout: expected 'soft' or 'argmax', got {readout!r}")
        self.readout = readout if self.network is not None else "argmax"
        self.params = params
        self._kw = params.correspondence_kwargs()

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

    def _consensus(self, frame: Frame):
        """The frame's consensus descriptors (H, W, D') of the learned descriptors, cached."""
        from ..flow.geometric import neighbourhood_descriptors

        p = self.params

        def make():
            d, _, v = self._described(frame)
            return neighbourhood_descriptors(d, v, p.consensus_radius, p.consensus_gate)

        key = ("network_geometric.consensus", str(self.siamese.path), p.consensus_radius, p.consensus_gate)
        return frame.cached(key, make)

    def correspondence(self, src: Frame, tgt: Frame) -> DenseCorrespondence:
        ds, gs, vs = self._described(src)
        dt, gt, vt = self._described(tgt)
        cs, ct = self._consensus(src), self._consensus(tgt)
        if self.readout == "argmax":
            return geometric_correspondence(ds, dt, gs, gt, vs, vt, **self._kw, consensus_src=cs, consensus_tgt=ct)
        return self._soft_readout(ds, dt, gs, gt, vs, vt, cs, ct)

    @torch.no_grad()
    def _soft_readout(self, ds, dt, gs, gt, vs, vt, cs, ct) -> DenseCorrespondence:
        """cs, ct: the consensus descriptors (H, W, D') of ds, dt."""
        from ..flow.geometric import prior_distance2, prior_target_cells
        from ..siamese.correlation import kernel_soft_argmax

        p = self.params
        hs, ws = ds.shape[:2]
        ht, wt = dt.shape[:2]
        vs_t, vt_t = torch.as_tensor(vs.reshape(-1)), torch.as_tensor(vt.reshape(-1))
        a = cs.reshape(hs * ws, -1)
        b = ct.reshape(ht * wt, -1)
        corr = torch.as_tensor(ds.reshape(hs * ws, -1)) @ torch.as_tensor(dt.reshape(ht * wt, -1)).T
        objective = corr
        if p.strength > 0:
            pred = prior_target_cells(a, b, a @ b.T, vs_t, vt_t, (hs, ws), (ht, wt), prior=p.prior,
                                      max_models=p.max_models, min_support=p.min_support, bandwidth=p.bandwidth,
                                      ransac_threshold=p.ransac_threshold, ransac_iterations=p.ransac_iterations,
                                      seed=p.seed)
            objective = corr - p.strength * prior_distance2(pred, (ht, wt)) / float(max(ht, wt)) ** 2
        spec = self.network.spec
        cells, _ = kernel_soft_argmax(objective[None], (ht, wt), vt_t[None], spec.temperature, spec.readout_sigma)
        idx = torch.where(vt_t[None], objective, torch.tensor(-float("inf"))).argmax(1)
        score = corr.gather(1, idx[:, None])[:, 0].numpy().reshape(hs, ws)
        cells = cells[0].numpy().astype(np.float64)
        return DenseCorrespondence(target_xy=gt.cell_to_image(cells).reshape(hs, ws, 2).astype(np.float32),
                                   score=score.astype(np.float32), valid=np.asarray(vs, bool).copy(), grid=gs,
                                   interpolation="bilinear")
