"""The Siamese network as a matcher (either architecture; a correlation checkpoint is served by
:class:`~sopcorr.matchers.network.NetworkMatcher`, the paper's flow network here): dense correspondence and dense descriptors
from a trained checkpoint (``siamese/<variant>/model.pt`` or ``finetuned.pt``).

``SiameseMatcher(checkpoint).correspondence(src, tgt)`` takes two Frames (only their images
are used), letterboxes both images to the network's input size S, predicts the flow and returns a
:class:`~sopcorr.geometry.DenseCorrespondence` on the **full-resolution input grid**
``FeatureGrid(Letterbox(h, w, S), stride=1)`` (S x S cells, one per input pixel):

* ``target_xy[y, x]``: the target *image* coordinates of source input pixel (x, y) moved by the
  flow (``Letterbox.input_to_image`` of the target);
* ``score``: cosine similarity of the network's dense descriptors (:meth:`features`, bilinearly
  sampled) at the source pixel and at its match -- a confidence for ranking matches;
* ``valid``: source pixel inside the resized source image and match inside the resized target
  image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry import DenseCorrespondence, FeatureGrid, Letterbox
from ..device import resolve_device
from ..siamese.checkpoint import architecture_of, load_checkpoint, model_from_checkpoint
from ..siamese.model import CheckpointError, ModelSpec, normalisation
from .base import Frame, Params

__all__ = ["SiameseParams", "SiameseMatcher"]


@dataclass(frozen=True)
class SiameseParams(Params):
    """device: 'auto' | 'cpu' | 'cuda' (speed only). backbone, input_size: the run the network
    is evaluated in (another run's network: ``evaluate.transfer_from``); None: the checkpoint's
    own. A checkpoint of another backbone is a CheckpointError; another input size is one for
    the paper's network, while the correlation network (convolutional) runs at the given size."""

    device: str = "auto"
    backbone: str | None = None
    input_size: int | None = None

    SCHEMA: ClassVar[dict[str, str]] = {"device": "siamese.device"}


class SiameseMatcher:
    """A trained Siamese flow network ready for inference.

    checkpoint: path of ``model.pt`` / ``finetuned.pt``; params: SiameseParams;
    backbone: when given, the checkpoint must have been trained with this backbone
    (CheckpointError otherwise); input_size likewise.
    """

    name = "siamese"
    params_class = SiameseParams

    def __init__(self, checkpoint: str | Path, params: SiameseParams = SiameseParams(),
                 backbone: str | None = None, input_size: int | None = None):
        self.path = Path(checkpoint)
        self.params = params
        self.device = resolve_device(params.device)
        backbone = backbone if backbone is not None else params.backbone
        input_size = input_size if input_size is not None else params.input_size
        ck = load_checkpoint(self.path)
        #: the correlation network (siamese.architecture: correlation) or None (the paper's net)
        self.network = None
        if architecture_of(ck) == "correlation":
            from .network import NetworkMatcher

            self.network = NetworkMatcher(self.path, device=params.device, backbone=backbone,
                                          input_size=input_size, _ck=ck)
            self.spec, self.size, self.model = self.network.spec, self.network.size, self.network.model
            return
        spec = ModelSpec.from_dict(ck["spec"])
        if backbone is not None and spec.backbone != backbone:
            raise CheckpointError(
                f"{self.path}: checkpoint was trained with backbone '{spec.backbone}', not '{backbone}' "
                f"(train it with backbone.name: {backbone} or use a matching checkpoint)")
        if input_size is not None and spec.input_size != int(input_size):
            raise CheckpointError(
                f"{self.path}: checkpoint input size is {spec.input_size}, not {input_size}")
        self.spec = spec
        self.size = spec.input_size
        self.model = model_from_checkpoint(ck, device=self.device, path=self.path)
        self.model.eval()
        self.mean, self.std = normalisation(self.model.encoder)

    # ------------------------------------------------------------------ helpers
    def _prep(self, img: np.ndarray) -> tuple[torch.Tensor, Letterbox]:
        from ..features.extract import preprocess

        x, lb = preprocess(np.asarray(img), self.size, self.mean, self.std)
        return x[None].to(self.device), lb

    # ------------------------------------------------------------------ the matcher interface
    def correspondence(self, src: Frame, tgt: Frame) -> DenseCorrespondence:
        """Dense correspondence of two frames' images (see :meth:`match_images`). The
        correlation network's two streams are independent up to the correlation, so each
        frame's learned descriptors are computed once and cached on the frame
        (:meth:`~sopcorr.matchers.network.NetworkMatcher.frame_correspondence`): the same
        read-out as one batched pass of both images, without re-encoding an image per pair."""
        if self.network is not None:
            return self.network.frame_correspondence(src, tgt)
        return self.match_images(src.image, tgt.image)

    def descriptors(self, frame: Frame) -> tuple[np.ndarray, FeatureGrid]:
        """The network's dense descriptor of the frame's image (see :meth:`image_descriptors`);
        cached on the frame."""
        return frame.cached(("siamese.descriptors", str(self.path)), lambda: self.image_descriptors(frame.image))

    # ------------------------------------------------------------------ images
    @torch.no_grad()
    def flow(self, img_src: np.ndarray, img_tgt: np.ndarray) -> tuple[np.ndarray, Letterbox, Letterbox]:
        """Raw network output: ((S, S, 2) float32 flow in input pixels, source and target
        letterboxes)."""
        xa, la = self._prep(img_src)
        xb, lb = self._prep(img_tgt)
        f = self.model(xa, xb)[0].float().permute(1, 2, 0).cpu().numpy()
        return f, la, lb

    @torch.no_grad()
    def match_images(self, img_src: np.ndarray, img_tgt: np.ndarray) -> DenseCorrespondence:
        """Dense correspondence of two uint8 (H, W, 3) images on the source's stride-1 grid
        (S x S cells); see the module docstring."""
        if self.network is not None:
            return self.network.correspondence(img_src, img_tgt)
        xa, la = self._prep(img_src)
        xb, lb = self._prep(img_tgt)
        S = self.size
        levels = self.model.encode(torch.cat([xa, xb], 0))  # one encoder pass for flow and descriptors
        la_, lb_ = [m[:1] for m in levels], [m[1:] for m in levels]
        flow = self.model.decode(la_, lb_).float()  # (1, 2, S, S)
        fa = self.model.features_from_levels(la_)  # (1, C, S/s, S/s)
        fb = self.model.features_from_levels(lb_)
        r = torch.arange(S, device=flow.device, dtype=torch.float32)
        yy, xx = torch.meshgrid(r, r, indexing="ij")
        tx = xx + flow[0, 0]
        ty = yy + flow[0, 1]
        norm = lambda u, v: torch.stack([(2 * u + 1) / S - 1, (2 * v + 1) / S - 1], -1)[None]  # noqa: E731
        score = torch.empty(S, S, device=flow.device)
        rows = max(1, (1 << 22) // max(1, fa.shape[1] * S))  # descriptor samples in chunks of rows (memory)
        for r0 in range(0, S, rows):
            sl = slice(r0, r0 + rows)
            da = F.grid_sample(fa, norm(xx[sl], yy[sl]), mode="bilinear", padding_mode="border", align_corners=False)
            db = F.grid_sample(fb, norm(tx[sl], ty[sl]), mode="bilinear", padding_mode="border", align_corners=False)
            # cosine similarity written out: F.cosine_similarity is ~10x slower on CPU for (1, C, h, w)
            norms = ((da * da).sum(1) * (db * db).sum(1)).sqrt().clamp(min=1e-6)
            score[sl] = ((da * db).sum(1) / norms)[0]
        score = score.cpu().numpy()
        txy = torch.stack([tx, ty], -1).cpu().numpy().astype(np.float64)
        grid = FeatureGrid(la, 1)
        rh, rw = lb.resized_hw
        inside = (txy[..., 0] >= -0.5) & (txy[..., 0] <= rw - 0.5) & (txy[..., 1] >= -0.5) & (txy[..., 1] <= rh - 0.5)
        valid = grid.valid_mask() & inside
        target_xy = lb.input_to_image(txy).astype(np.float32)
        return DenseCorrespondence(target_xy=target_xy, score=score.astype(np.float32), valid=valid, grid=grid)

    @torch.no_grad()
    def image_descriptors(self, img: np.ndarray) -> tuple[np.ndarray, FeatureGrid]:
        """Dense descriptor of one uint8 image: ((H, W, C) float32 L2-normalised, FeatureGrid)
        with H = W = S // stride, stride = the encoder's finest stride."""
        if self.network is not None:
            return self.network.features(img)
        x, lb = self._prep(img)
        f = self.model.features(x)[0].permute(1, 2, 0).float().cpu().numpy()
        return np.ascontiguousarray(f, dtype=np.float32), FeatureGrid(lb, self.model.strides[0])
