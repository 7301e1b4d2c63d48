"""Dense correspondence and dense descriptors from a trained Siamese checkpoint.

``SiameseMatcher(checkpoint)`` reads a checkpoint of either architecture and offers
``correspondence(img_a, img_b)``, ``features(img)`` and ``spec``:

* a **correlation** network (:class:`NetworkMatcher`): both images letterboxed at the network's
  input size (the feature stage's), one batched encoder pass, the head's descriptors, their
  correlation and the kernel soft-argmax read-out; a
  :class:`~sopcorr.geometry.DenseCorrespondence` on the source's feature grid (stride s):
  ``target_xy`` the read-out's target image coordinates, ``score`` the cosine of the best
  match, ``valid`` the source cells on the image. ``features`` are the learned descriptors.
* a **paper** network (:class:`FlowMatcher`) predicts the flow and returns a
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

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry import DenseCorrespondence, FeatureGrid, Letterbox
from .checkpoint import architecture_of, load_checkpoint, model_from_checkpoint
from .loop import resolve_device
from .model import CheckpointError, ModelSpec, normalisation


class SiameseMatcher:
    """A trained Siamese network of either architecture ready for inference (the module
    docstring); arguments as :class:`FlowMatcher`. ``impl`` is the architecture's matcher."""

    def __init__(self, checkpoint: str | Path, device: str = "auto", backbone: str | None = None,
                 input_size: int | None = None):
        ck = load_checkpoint(checkpoint)
        cls = NetworkMatcher if architecture_of(ck) == "correlation" else FlowMatcher
        self.impl = cls(checkpoint, device=device, backbone=backbone, input_size=input_size, _ck=ck)

    @property
    def architecture(self) -> str:
        return "correlation" if isinstance(self.impl, NetworkMatcher) else "paper"

    def __getattr__(self, name):  # path, spec, size, model, correspondence, features, flow, ...
        if name == "impl":
            raise AttributeError(name)
        return getattr(self.impl, name)


def _check_request(path: Path, spec, backbone: str | None, input_size: int | None) -> None:
    if backbone is not None and spec.backbone != backbone:
        raise CheckpointError(
            f"{path}: checkpoint was trained with backbone '{spec.backbone}', not '{backbone}' "
            f"(train it with backbone.name: {backbone} or use a matching checkpoint)")
    if input_size is not None and spec.input_size != int(input_size):
        raise CheckpointError(f"{path}: checkpoint input size is {spec.input_size}, not {input_size}")


class NetworkMatcher:
    """A trained correlation network (:mod:`sopcorr.siamese.correlation`) ready for inference.

    checkpoint: ``model.pt`` / ``finetuned.pt`` of ``architecture: correlation``; device:
    'auto' | 'cpu' | 'cuda'; backbone / input_size: when given, the checkpoint must have been
    trained with them (CheckpointError otherwise); interpolation: how the correspondence
    transfers points between cells ('bilinear' or 'nearest')."""

    def __init__(self, checkpoint: str | Path, device: str = "auto", backbone: str | None = None,
                 input_size: int | None = None, interpolation: str = "bilinear", _ck: dict | None = None):
        self.path = Path(checkpoint)
        self.device = resolve_device(device)
        ck = _ck if _ck is not None else load_checkpoint(self.path)
        if architecture_of(ck) != "correlation":
            raise CheckpointError(f"{self.path}: not a correlation network (architecture {architecture_of(ck)!r})")
        self.model = model_from_checkpoint(ck, device=self.device, path=self.path).eval()
        self.spec = self.model.spec
        _check_request(self.path, self.spec, backbone, input_size)
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


class FlowMatcher:
    """A trained Siamese flow network (``architecture: paper``) ready for inference.

    checkpoint: path of ``model.pt`` / ``finetuned.pt``; device: 'auto' | 'cpu' | 'cuda';
    backbone: when given, the checkpoint must have been trained with this backbone
    (CheckpointError otherwise); input_size likewise.
    """

    def __init__(self, checkpoint: str | Path, device: str = "auto", backbone: str | None = None,
                 input_size: int | None = None, _ck: dict | None = None):
        self.path = Path(checkpoint)
        self.device = resolve_device(device)
        ck = _ck if _ck is not None else load_checkpoint(self.path)
        spec = ModelSpec.from_dict(ck["spec"])
        _check_request(self.path, spec, backbone, input_size)
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

    @torch.no_grad()
    def flow(self, img_src: np.ndarray, img_tgt: np.ndarray) -> tuple[np.ndarray, Letterbox, Letterbox]:
        """Raw network output: ((S, S, 2) float32 flow in input pixels, source and target
        letterboxes)."""
        xa, la = self._prep(img_src)
        xb, lb = self._prep(img_tgt)
        f = self.model(xa, xb)[0].float().permute(1, 2, 0).cpu().numpy()
        return f, la, lb

    @torch.no_grad()
    def correspondence(self, img_src: np.ndarray, img_tgt: np.ndarray) -> DenseCorrespondence:
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
    def features(self, img: np.ndarray) -> tuple[np.ndarray, FeatureGrid]:
        """Dense descriptor of one uint8 image: ((H, W, C) float32 L2-normalised, FeatureGrid)
        with H = W = S // stride, stride = the encoder's finest stride."""
        x, lb = self._prep(img)
        f = self.model.features(x)[0].permute(1, 2, 0).float().cpu().numpy()
        return np.ascontiguousarray(f, dtype=np.float32), FeatureGrid(lb, self.model.strides[0])
