"""The geometric matcher on a trained Siamese network's descriptors (method
``ours_network_geometric``): the network's L2-normalised dense descriptors replace the teacher's
raw features + embedding in the geometric matcher (:mod:`sopcorr.flow.geometric`: edge-aware
consensus, mutual matches, the RANSAC affine location prior).

``readout`` (:class:`NetworkGeometricParams`):

* ``'soft'`` (default, the correlation network): the prior is added to the network's own
  correlation of the learned descriptors, ``corr - strength * d^2 / side^2``, and read out as
  the network reads out its correlation, by its kernel soft-argmax
  (:meth:`~sopcorr.matchers.correlation_network.CorrelationNetworkMatcher.readout`): the
  network's read-out with the geometric prior. A point between cell centres is transferred as
  the network transfers its own (``interpolation: 'adaptive'``, the default): the four cells'
  matches interpolated where they agree, elsewhere read out the same way from its four cells'
  interpolated objective rows (:func:`~sopcorr.matchers.correlation_network.point_readout`;
  ``'readout'`` reads out every point, ``'bilinear'`` interpolates the cells' matches everywhere).
* ``'argmax'``: :func:`~sopcorr.flow.geometric.geometric_correspondence` on the learned
  descriptors (prior-weighted arg-max of the consensus similarity), as the teacher does on raw
  features + embedding; the paper's architecture, whose network has no such read-out, always
  uses it.

Descriptors ``(H, W, D)`` come from the frame's stored raw feature grid through the head when
that grid is the network's encoder output
(:meth:`~sopcorr.matchers.correlation_network.CorrelationNetworkMatcher.store_descriptors`).
Otherwise (an end-to-end checkpoint, a frame without features, the paper's network) they come
from the frame's image through the whole network, on the network's own grid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from ..errors import ConfigError
from ..flow.geometric import geometric_correspondence
from ..geometry import DenseCorrespondence, FeatureGrid
from .base import Frame, Params
from .geometric import GeometricParams

__all__ = ["NetworkGeometricParams", "NetworkGeometricMatcher"]

READOUTS = ("soft", "argmax")


@dataclass(frozen=True)
class NetworkGeometricParams(Params):
    """geometric: the geometric matcher's settings (``embedding_weight`` is not used: the
    descriptor is the network's); device: the network's ('auto' | 'cpu' | 'cuda', speed only);
    readout: 'soft' (the network's kernel soft-argmax with the prior) or 'argmax' (module
    docstring); interpolation: how the soft read-out transfers a point between cell centres
    ('adaptive', 'readout' or 'bilinear', module docstring); backbone, input_size: the run the network is evaluated in, as
    :class:`~sopcorr.matchers.networks.NetworkParams`' (None: the checkpoint's own)."""

    geometric: GeometricParams = field(default_factory=GeometricParams)
    device: str = "auto"
    readout: str = "soft"
    interpolation: str = "adaptive"
    backbone: str | None = None
    input_size: int | None = None

    SCHEMA: ClassVar[dict[str, str]] = {"device": "siamese.device"}

    def __post_init__(self):
        if self.readout not in READOUTS:
            raise ConfigError(f"config error: readout: expected one of {', '.join(READOUTS)}, got {self.readout!r}")
        if self.interpolation not in ("adaptive", "readout", "bilinear"):
            raise ConfigError(f"config error: interpolation: expected adaptive, readout or bilinear, "
                              f"got {self.interpolation!r}")


class NetworkGeometricMatcher:
    """The geometric matcher on the descriptors of the network of ``checkpoint``
    (``siamese/<variant>/model.pt`` / ``finetuned.pt`` of either architecture, served by
    :func:`~sopcorr.matchers.networks.network_matcher`)."""

    name = "network_geometric"
    params_class = NetworkGeometricParams

    def __init__(self, params: NetworkGeometricParams = NetworkGeometricParams(), checkpoint=None):
        from .networks import network_matcher

        if checkpoint is None:
            raise TypeError("NetworkGeometricMatcher needs a checkpoint")
        self.params = params
        self.network = network_matcher(checkpoint, params)
        self.readout = params.readout if self.network.soft_readout else "argmax"
        self._kw = params.geometric.correspondence_kwargs()

    def descriptors(self, frame: Frame) -> tuple[np.ndarray, FeatureGrid]:
        """((H, W, D) float32 learned descriptors, FeatureGrid); cached on the frame."""
        return self._described(frame)[:2]

    def _described(self, frame: Frame) -> tuple[np.ndarray, FeatureGrid, np.ndarray]:
        def make():
            d = self.network.store_descriptors(frame)
            if d is not None:
                valid = frame.valid if frame.valid is not None else frame.grid.valid_mask()
                return d, frame.grid, np.asarray(valid, bool)
            d, grid = self.network.descriptors(frame)  # the network's own, shared with its method
            return d, grid, grid.valid_mask()

        return frame.cached(("network_geometric.descriptors", str(self.network.path)), make)

    def _consensus(self, frame: Frame):
        """The frame's consensus descriptors of the learned descriptors in factored form
        (:func:`~sopcorr.flow.geometric.consensus_terms`), cached."""
        from ..flow.geometric import consensus_terms

        p = self.params.geometric

        def make():
            d, _, v = self._described(frame)
            return consensus_terms(d, v, p.consensus_radius, p.consensus_gate)

        key = ("network_geometric.consensus", str(self.network.path), p.consensus_radius, p.consensus_gate)
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
        """cs, ct: the consensus descriptors of ds, dt (:func:`~sopcorr.flow.geometric.consensus_terms`)."""
        from ..flow.geometric import consensus_similarity, prior_distance2, prior_target_cells

        p = self.params.geometric
        hs, ws = ds.shape[:2]
        ht, wt = dt.shape[:2]
        vs_t, vt_t = torch.as_tensor(vs.reshape(-1)), torch.as_tensor(vt.reshape(-1))
        corr = self.network.correlate(torch.as_tensor(ds.reshape(hs * ws, -1)) @ torch.as_tensor(dt.reshape(ht * wt, -1)).T,
                                      (hs, ws), (ht, wt))
        objective = corr
        if p.strength > 0:
            pred = prior_target_cells(consensus_similarity(cs, ct), vs_t, vt_t, (hs, ws), (ht, wt),
                                      **p.prior_kwargs())
            objective = corr - p.strength * prior_distance2(pred, (ht, wt)) / float(max(ht, wt)) ** 2
        cells = self.network.readout(objective, (ht, wt), vt_t)
        idx = torch.where(vt_t[None], objective, torch.tensor(-float("inf"))).argmax(1)
        score = corr.gather(1, idx[:, None])[:, 0].numpy().reshape(hs, ws)
        cells = cells.numpy().astype(np.float64)
        read = self.network.point_reader(objective, (hs, ws), (ht, wt), vt_t, gt, corr)
        return DenseCorrespondence(target_xy=gt.cell_to_image(cells).reshape(hs, ws, 2).astype(np.float32),
                                   score=score.astype(np.float32), valid=np.asarray(vs, bool).copy(), grid=gs,
                                   interpolation=self.params.interpolation, point_readout=read, target_grid=gt)
