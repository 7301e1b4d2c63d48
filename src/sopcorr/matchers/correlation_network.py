"""The correlation network (``siamese.architecture: correlation``) as a matcher.

``CorrelationNetworkMatcher(params, checkpoint)``: both images letterboxed at the network's input
size (the feature stage's; ``params.input_size``: another size, the encoder rebuilt for it and
the same head on its grid, e.g. another run's network on this run's images), the encoder, the head's L2-normalised descriptors, their correlation
and the kernel soft-argmax read-out: a :class:`~sopcorr.geometry.DenseCorrespondence` on the
source's feature grid (stride s): ``target_xy`` the read-out's target image coordinates,
``score`` the cosine of the best match, ``valid`` the source cells on the image. A point between
cell centres (a keypoint) is transferred ``adaptive``-ly (the default): where its four cells'
matches agree (all within a target cell of their mean) it gets their bilinear interpolation,
elsewhere the network reads it out itself (``readout``): the kernel soft-argmax of the bilinear
interpolation of its four cells' correlation rows, that is (up to the read-out filters) of the
correlation of its bilinearly interpolated descriptor; at a cell centre that is the cell's own
match. Interpolating the four cells' *matches* everywhere ('bilinear') averages a point on the
object's rim with the arbitrary matches of background cells; reading out every point
('readout') is less precise inside the object, where the matches agree (docs/RESULTS.md,
issue 23).
``image_descriptors(img)`` / ``descriptors(frame)`` are the learned descriptors (H, W, D);
``describe(grid)`` applies the head to a feature store's grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from ..geometry import DenseCorrespondence, FeatureGrid
from .base import Frame
from .networks import NetworkMatcher, NetworkParams

__all__ = ["CorrelationNetworkParams", "CorrelationNetworkMatcher"]

INTERPOLATIONS = ("adaptive", "readout", "bilinear", "nearest")


@dataclass(frozen=True)
class CorrelationNetworkParams(NetworkParams):
    """device: 'auto' | 'cpu' | 'cuda' (speed only); interpolation: how the correspondence
    transfers points between cell centres ('adaptive': 'bilinear' where the four cells' matches
    agree, 'readout' where they do not, :meth:`~sopcorr.geometry.DenseCorrespondence.agreeing`;
    'readout': the network's read-out of the point's interpolated correlation row,
    :func:`point_readout`; 'bilinear': the four cells' matches interpolated; 'nearest': the
    nearest cell's match)."""

    interpolation: str = "adaptive"

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"config error: interpolation: expected one of {', '.join(INTERPOLATIONS)}, "
                              f"got {self.interpolation!r}")


def point_readout(objective: torch.Tensor, shape_src: tuple[int, int], shape_tgt: tuple[int, int],
                  valid_tgt: torch.Tensor, grid_tgt: FeatureGrid, temperature: float, sigma: float,
                  corr: torch.Tensor | None = None):
    """The network's read-out of points between cell centres, for
    :attr:`~sopcorr.geometry.DenseCorrespondence.point_readout`.

    objective (Ns, Nt): what the network reads out per source cell (its filtered correlation, or
    that with a location prior's penalty); corr (Ns, Nt): what the score is taken from (None:
    the objective); valid_tgt (Nt,) bool. Returns a function: source cells (K, 2) continuous
    (col, row) -> ((K, 2) float64 target image points, (K,) float64 scores): the kernel
    soft-argmax (the network's temperature and kernel) of the objective's
    :func:`~sopcorr.siamese.correlation.net.interpolated_rows` over the valid target cells, the
    score the interpolated ``corr`` row at that row's arg-max. At a cell centre that is the
    cell's own read-out. Without the network's filters (no consensus, no mutual filter, no
    prior) the interpolated row is exactly the correlation of the point's bilinearly
    interpolated (not renormalised) descriptor."""
    from ..siamese.correlation.net import interpolated_rows, kernel_soft_argmax, masked_logits

    def read(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            at = torch.as_tensor(np.asarray(cells, np.float64), device=objective.device)
            rows = interpolated_rows(objective, shape_src, at)
            out, score = kernel_soft_argmax(rows[None], shape_tgt, valid_tgt[None], temperature, sigma)
            if corr is not None:
                idx = masked_logits(rows[None], valid_tgt[None], temperature).argmax(-1)[0]
                score = interpolated_rows(corr, shape_src, at).gather(1, idx[:, None])[:, 0][None]
        xy = grid_tgt.cell_to_image(out[0].double().cpu().numpy())
        return xy, score[0].double().cpu().numpy()

    return read


class CorrelationNetworkMatcher(NetworkMatcher):
    """A trained correlation network (:mod:`sopcorr.siamese.correlation.net`) ready for
    inference (module docstring)."""

    name = "correlation_network"
    architecture = "correlation"
    params_class = CorrelationNetworkParams
    soft_readout = True
    any_input_size = True

    def backbone(self):
        return self.model.encoder.backbone

    @property
    def stride(self) -> int:
        """Pixels per cell of the network's grid."""
        return int(self.spec.stride)

    @torch.no_grad()
    def grid(self, img: np.ndarray) -> tuple[np.ndarray, FeatureGrid]:
        """The encoder's grid of one image: ((H, W, C) float32, as the feature stage stores it;
        its FeatureGrid)."""
        x, lb = self._prep(img)
        g = self.model.encode(x)[0].permute(1, 2, 0).float().cpu().numpy()
        return np.ascontiguousarray(g), FeatureGrid(lb, self.stride)

    @torch.no_grad()
    def describe(self, grid: np.ndarray) -> np.ndarray:
        """(H, W, C) encoder grid (e.g. a feature store's) -> (H, W, D) float32 learned descriptors."""
        g = torch.as_tensor(np.asarray(grid, np.float32), device=self.device).permute(2, 0, 1)[None]
        return np.ascontiguousarray(self.model.describe(g)[0].permute(1, 2, 0).float().cpu().numpy())

    @torch.no_grad()
    def image_descriptors(self, img: np.ndarray) -> tuple[np.ndarray, FeatureGrid]:
        """Learned descriptors of one uint8 image: ((H, W, D) float32 L2-normalised, FeatureGrid)."""
        x, lb = self._prep(img)
        d = self.model.describe(self.model.encode(x))[0].permute(1, 2, 0).float().cpu().numpy()
        return np.ascontiguousarray(d), FeatureGrid(lb, self.stride)

    def same_encoder(self, other) -> bool:
        """Both correlation networks letterbox and normalise an image alike, on the same device,
        and their encoders (class, layers, ReLU, weights) are equal: one encoder pass serves
        both (their heads differ)."""
        if type(other) is not type(self) or (self.size, self.stride, str(self.device)) != (
                other.size, other.stride, str(other.device)):
            return False
        if not (np.array_equal(np.asarray(self.mean), np.asarray(other.mean))
                and np.array_equal(np.asarray(self.std), np.asarray(other.std))):
            return False
        a, b = self.model.encoder, other.model.encoder
        if a is None or b is None or type(a) is not type(b) or type(a.backbone) is not type(b.backbone):
            return False
        if (list(getattr(a, "layers", [])), getattr(a, "relu", None)) != (list(getattr(b, "layers", [])),
                                                                         getattr(b, "relu", None)):
            return False
        sa, sb = a.state_dict(), b.state_dict()
        return sa.keys() == sb.keys() and all(
            sa[k].dtype == sb[k].dtype and sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa)

    @torch.no_grad()
    def describe_with_peers(self, frame: Frame) -> None:
        """One encoder pass of the frame's image, each of this matcher's and its peers' heads on
        it: exactly :meth:`image_descriptors` of each (the same encoder output tensor)."""
        x, lb = self._prep(frame.image)
        enc = self.model.encode(x)
        for m in (self, *self.encoder_peers):
            key = m.descriptor_key()
            if key not in frame.cache:
                d = m.model.describe(enc)[0].permute(1, 2, 0).float().cpu().numpy()
                frame.cache[key] = (np.ascontiguousarray(d), FeatureGrid(lb, m.stride))

    def store_descriptors(self, frame: Frame) -> np.ndarray | None:
        """The head on the frame's stored feature grid when that grid is this network's encoder
        output: a checkpoint whose encoder was not trained end to end, and a grid of the
        network's stride, size and channels (else None)."""
        spec = self.spec
        if frame.features is None or frame.grid is None or spec.encoder_trained:
            return None
        g = spec.grid_size
        if (frame.grid.stride, frame.features.shape) != (spec.stride, (g, g, spec.in_channels)):
            return None
        return self.describe(frame.features)

    @torch.no_grad()
    def match_descriptors(self, desc_src: np.ndarray, desc_tgt: np.ndarray, grid_src: FeatureGrid,
                          grid_tgt: FeatureGrid) -> DenseCorrespondence:
        """The network's read-out on descriptors (H, W, D) of both images (module docstring)."""
        ds = torch.as_tensor(np.asarray(desc_src, np.float32), device=self.device).permute(2, 0, 1)[None]
        dt = torch.as_tensor(np.asarray(desc_tgt, np.float32), device=self.device).permute(2, 0, 1)[None]
        return self._readout(ds, dt, grid_src, grid_tgt)

    def _readout(self, ds: torch.Tensor, dt: torch.Tensor, grid_src: FeatureGrid, grid_tgt: FeatureGrid):
        vs, vt = grid_src.valid_mask(), grid_tgt.valid_mask()
        valid_tgt = torch.as_tensor(vt.reshape(1, -1), device=ds.device)
        corr, cells, score = self.model.match(ds, dt, valid_tgt)
        h, w = vs.shape
        cells = cells[0].float().cpu().numpy().reshape(h, w, 2).astype(np.float64)
        spec = self.spec
        read = point_readout(corr[0], (h, w), tuple(vt.shape), valid_tgt[0], grid_tgt, spec.temperature,
                             spec.readout_sigma)
        return DenseCorrespondence(target_xy=grid_tgt.cell_to_image(cells).astype(np.float32),
                                   score=score[0].float().cpu().numpy().reshape(h, w).astype(np.float32),
                                   valid=vs, grid=grid_src, interpolation=self.params.interpolation,
                                   point_readout=read, target_grid=grid_tgt)

    def correlate(self, corr: torch.Tensor, shape_src: tuple[int, int], shape_tgt: tuple[int, int]) -> torch.Tensor:
        """The correlation the network reads out from the cosines (Ns, Nt) of its descriptors
        (:meth:`~sopcorr.siamese.correlation.net.CorrelationNet.filter`: neighbourhood consensus
        and soft mutual filter where the network has them, else the cosines)."""
        return self.model.filter(corr[None], shape_src, shape_tgt)[0]

    def point_reader(self, objective: torch.Tensor, shape_src: tuple[int, int], shape_tgt: tuple[int, int],
                     valid_tgt: torch.Tensor, grid_tgt: FeatureGrid, corr: torch.Tensor | None = None):
        """:func:`point_readout` of an objective (Ns, Nt) with this network's temperature and
        kernel (the points' read-out that goes with :meth:`readout`)."""
        return point_readout(objective, shape_src, shape_tgt, valid_tgt, grid_tgt, self.spec.temperature,
                             self.spec.readout_sigma, corr)

    def readout(self, objective: torch.Tensor, shape_tgt: tuple[int, int], valid_tgt: torch.Tensor) -> torch.Tensor:
        """The network's kernel soft-argmax (its temperature and kernel) of an objective (Ns, Nt)
        over the valid target cells (Nt,) bool -> (Ns, 2) target cells (col, row)."""
        from ..siamese.correlation.net import kernel_soft_argmax

        cells, _ = kernel_soft_argmax(objective[None], shape_tgt, valid_tgt[None], self.spec.temperature,
                                      self.spec.readout_sigma)
        return cells[0]

    @torch.no_grad()
    def match_images(self, img_src: np.ndarray, img_tgt: np.ndarray) -> DenseCorrespondence:
        """Dense correspondence of two uint8 (H, W, 3) images on the source's feature grid: one
        batched encoder pass, the head, the correlation and its kernel soft-argmax."""
        xa, la = self._prep(img_src)
        xb, lb = self._prep(img_tgt)
        d = self.model.describe(self.model.encode(torch.cat([xa, xb], 0)))
        return self._readout(d[:1], d[1:], FeatureGrid(la, self.stride), FeatureGrid(lb, self.stride))

    def correspondence(self, src: Frame, tgt: Frame) -> DenseCorrespondence:
        """:meth:`match_images` of two frames' images, with each frame's descriptors
        (:meth:`descriptors`) computed once and cached on the frame: the two streams share no
        computation before the correlation, so this equals the batched pass (up to float
        rounding) and costs one encoder pass per image instead of two per pair."""
        (ds, gs), (dt, gt) = self.descriptors(src), self.descriptors(tgt)
        return self.match_descriptors(ds, dt, gs, gt)
