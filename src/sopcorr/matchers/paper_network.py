"""The paper's Siamese flow network (``siamese.architecture: paper``) as a matcher: dense
correspondence and dense descriptors from a trained checkpoint (``siamese/<variant>/model.pt``
or ``finetuned.pt``).

``PaperNetworkMatcher(params, checkpoint).correspondence(src, tgt)`` takes two Frames (only
their images are used), letterboxes both images to the network's input size S, predicts the
flow and returns a :class:`~sopcorr.geometry.DenseCorrespondence` on the **full-resolution
input grid** ``FeatureGrid(Letterbox(h, w, S), stride=1)`` (S x S cells, one per input pixel):

* ``target_xy[y, x]``: the target *image* coordinates of source input pixel (x, y) moved by the
  flow (``Letterbox.input_to_image`` of the target);
* ``score``: cosine similarity of the network's dense descriptors (:meth:`image_descriptors`,
  bilinearly sampled) at the source pixel and at its match -- a confidence for ranking matches;
* ``valid``: source pixel inside the resized source image and match inside the resized target
  image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry import DenseCorrespondence, FeatureGrid
from .base import Frame
from .networks import NetworkMatcher, NetworkParams

__all__ = ["PaperNetworkParams", "PaperNetworkMatcher"]


@dataclass(frozen=True)
class PaperNetworkParams(NetworkParams):
    """device: 'auto' | 'cpu' | 'cuda' (speed only)."""


class PaperNetworkMatcher(NetworkMatcher):
    """A trained paper's flow network ready for inference (module docstring)."""

    name = "paper_network"
    architecture = "paper"
    params_class = PaperNetworkParams

    def correspondence(self, src: Frame, tgt: Frame) -> DenseCorrespondence:
        """Dense correspondence of two frames' images (:meth:`match_images`)."""
        return self.match_images(src.image, tgt.image)

    @torch.no_grad()
    def match_images(self, img_src: np.ndarray, img_tgt: np.ndarray) -> DenseCorrespondence:
        """Dense correspondence of two uint8 (H, W, 3) images on the source's stride-1 grid
        (S x S cells); see the module docstring."""
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
        x, lb = self._prep(img)
        f = self.model.features(x)[0].permute(1, 2, 0).float().cpu().numpy()
        return np.ascontiguousarray(f, dtype=np.float32), FeatureGrid(lb, self.model.strides[0])
