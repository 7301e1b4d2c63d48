"""The correlation network (``siamese.architecture: correlation``) as a matcher.

``NetworkMatcher(checkpoint)``: both images letterboxed at the network's input size (the
feature stage's), one batched encoder pass, the head's L2-normalised descriptors, their
correlation and the kernel soft-argmax read-out: a :class:`~sopcorr.geometry.DenseCorrespondence`
on the source's feature grid (stride s): ``target_xy`` the read-out's target image coordinates,
``score`` the cosine of the best match, ``valid`` the source cells on the image.
``features(img)`` / ``descriptors(frame)`` are the learned descriptors (H, W, D).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..device import resolve_device
from ..geometry import DenseCorrespondence, FeatureGrid, Letterbox
from ..siamese.checkpoint import architecture_of, load_checkpoint, model_from_checkpoint
from ..siamese.model import CheckpointError
from .base import Frame

__all__ = ["NetworkMatcher"]


def _check_backbone(path: Path, spec, backbone: str | None) -> None:
    if backbone is not None and spec.backbone != backbone:
        raise CheckpointError(
            f"{path}: checkpoint was trained with backbone '{spec.backbone}', not '{backbone}' "
            f"(train it with backbone.name: {backbone} or use a matching checkpoint)")


class NetworkMatcher:
    """A trained correlation network (:mod:`sopcorr.siamese.correlation`) ready for inference.

    checkpoint: ``model.pt`` / ``finetuned.pt`` of ``architecture: correlation``; device:
    'auto' | 'cpu' | 'cuda'; backbone: when given, the checkpoint must have been trained with
    it (CheckpointError otherwise); input_size: when given, the network runs at this size
    instead of the one it was trained at (encoder and head are convolutional: the encoder is
    rebuilt for the size, the head and the read-out work on any grid; e.g. another run's
    network on this run's images); interpolation: how the correspondence transfers points
    between cells ('bilinear' or 'nearest')."""

    def __init__(self, checkpoint: str | Path, device: str = "auto", backbone: str | None = None,
                 input_size: int | None = None, interpolation: str = "bilinear", _ck: dict | None = None):
        self.path = Path(checkpoint)
        self.device = resolve_device(device)
        ck = _ck if _ck is not None else load_checkpoint(self.path)
        if architecture_of(ck) != "correlation":
            raise CheckpointError(f"{self.path}: not a correlation network (architecture {architecture_of(ck)!r})")
        from ..siamese.checkpoint import spec_from_checkpoint

        _check_backbone(self.path, spec_from_checkpoint(ck, self.path), backbone)
        if input_size is not None and int(input_size) != int(ck["spec"]["input_size"]):
            ck = {**ck, "spec": {**ck["spec"], "input_size": int(input_size)}}
        self.model = model_from_checkpoint(ck, device=self.device, path=self.path).eval()
        self.spec = self.model.spec
        self.size = self.spec.input_size
        self.stride = self.spec.stride
        self.interpolation = interpolation
        bb = self.model.encoder.backbone
        self.mean, self.std = tuple(bb.spec.mean), tuple(bb.spec.std)

    def _prep(self, img: np.ndarray) -> tuple[torch.Tensor, Letterbox]:
        from ..features.extract import preprocess

        x, lb = preprocess(np.asarray(img), self.size, self.mean, self.std)
        return x[None].to(self.device), lb

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
    def features(self, img: np.ndarray) -> tuple[np.ndarray, FeatureGrid]:
        """Learned descriptors of one uint8 image: ((H, W, D) float32 L2-normalised, FeatureGrid)."""
        x, lb = self._prep(img)
        d = self.model.describe(self.model.encode(x))[0].permute(1, 2, 0).float().cpu().numpy()
        return np.ascontiguousarray(d), FeatureGrid(lb, self.stride)

    @torch.no_grad()
    def match_descriptors(self, desc_src: np.ndarray, desc_tgt: np.ndarray, grid_src: FeatureGrid,
                          grid_tgt: FeatureGrid) -> DenseCorrespondence:
        """The network's read-out on descriptors (H, W, D) of both images (module docstring)."""
        ds = torch.as_tensor(np.asarray(desc_src, np.float32), device=self.device).permute(2, 0, 1)[None]
        dt = torch.as_tensor(np.asarray(desc_tgt, np.float32), device=self.device).permute(2, 0, 1)[None]
        return self._readout(ds, dt, grid_src, grid_tgt)

    def _readout(self, ds: torch.Tensor, dt: torch.Tensor, grid_src: FeatureGrid, grid_tgt: FeatureGrid):
        vs, vt = grid_src.valid_mask(), grid_tgt.valid_mask()
        _, cells, score = self.model.match(ds, dt, torch.as_tensor(vt.reshape(1, -1), device=ds.device))
        h, w = vs.shape
        cells = cells[0].float().cpu().numpy().reshape(h, w, 2).astype(np.float64)
        return DenseCorrespondence(target_xy=grid_tgt.cell_to_image(cells).astype(np.float32),
                                   score=score[0].float().cpu().numpy().reshape(h, w).astype(np.float32),
                                   valid=vs, grid=grid_src, interpolation=self.interpolation)

    @torch.no_grad()
    def correspondence(self, img_src: np.ndarray, img_tgt: np.ndarray) -> DenseCorrespondence:
        """Dense correspondence of two uint8 (H, W, 3) images on the source's feature grid: one
        batched encoder pass, the head, the correlation and its kernel soft-argmax."""
        xa, la = self._prep(img_src)
        xb, lb = self._prep(img_tgt)
        d = self.model.describe(self.model.encode(torch.cat([xa, xb], 0)))
        return self._readout(d[:1], d[1:], FeatureGrid(la, self.stride), FeatureGrid(lb, self.stride))

    # the Frame interface of every matcher (only the frames' images are used)
    def frame_correspondence(self, src: Frame, tgt: Frame) -> DenseCorrespondence:
        """:meth:`correspondence` of two frames' images, with each frame's descriptors
        (:meth:`descriptors`) computed once and cached on the frame: the two streams share no
        computation before the correlation, so this equals the batched pass (up to float
        rounding) and costs one encoder pass per image instead of two per pair."""
        (ds, gs), (dt, gt) = self.descriptors(src), self.descriptors(tgt)
        return self.match_descriptors(ds, dt, gs, gt)

    def descriptors(self, frame: Frame) -> tuple[np.ndarray, FeatureGrid]:
        """The learned descriptors of the frame's image, cached on the frame."""
        return frame.cached(("network.descriptors", str(self.path)), lambda: self.features(frame.image))

