"""Dense feature extraction: letterbox, batched forward pass, ReLU, per-location L2.

* :func:`preprocess` letterboxes one uint8 image onto an S x S canvas (see
  :mod:`sopcorr.geometry`) and normalises it; the padding is exactly zero after normalisation
  (it is filled with the mean colour).
* :func:`dense_maps` turns a backbone's layer outputs into one dense descriptor map: each chosen
  layer is rectified (optional) and L2-normalised per location, deeper (coarser) layers are
  bilinearly upsampled to the finest grid, the layers are concatenated and the result is
  L2-normalised per location again (so every layer weighs the same). Differentiable and
  device-agnostic (the Siamese encoder and the evaluation reuse it).
* :func:`global_descriptor` pools a dense map over the valid cells into one unit vector.
* :func:`dense_batches` runs the backbone over images a batch at a time;
  :func:`extract_images` / :func:`extract_category` write its maps as a feature store
  (:mod:`sopcorr.features.store`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DatasetError
from ..geometry import FeatureGrid, Letterbox
from ..device import resolve_device
from .backbones import BackboneNet, build_backbone
from .registry import DEFAULT_BACKBONE, IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

#: smallest norm treated as non-zero in the L2 normalisation
EPS = 1e-6


def preprocess(image: np.ndarray, size: int, mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD) -> tuple[torch.Tensor, Letterbox]:
    """Letterbox and normalise one image.

    image: (H, W, 3) uint8 RGB (an (H, W) grey image is replicated to 3 channels).
    Returns ((3, S, S) float32 tensor, normalised as (pixel / 255 - mean) / std, with the
    resized image at the top-left and zeros in the padding; the :class:`Letterbox`).
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"expected an (H, W, 3) image, got shape {img.shape}")
    img = img[..., :3]
    lb = Letterbox(int(img.shape[0]), int(img.shape[1]), int(size))
    rh, rw = lb.resized_hw
    interp = cv2.INTER_AREA if lb.scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(np.ascontiguousarray(img), (rw, rh), interpolation=interp)
    if resized.ndim == 2:  # cv2 drops a singleton channel axis for 1-pixel-wide inputs
        resized = resized.reshape(rh, rw, 3)
    m = np.asarray(mean, np.float32)
    s = np.asarray(std, np.float32)
    norm = (resized.astype(np.float32) / 255.0 - m) / s
    canvas = np.zeros((size, size, 3), np.float32)
    canvas[:rh, :rw] = norm
    return torch.from_numpy(canvas.transpose(2, 0, 1).copy()), lb


def l2_normalize(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x / max(||x||, EPS) along ``dim`` (zero vectors stay zero)."""
    return x / x.norm(dim=dim, keepdim=True).clamp_min(EPS)


def combine_layers(feats: dict[str, torch.Tensor], layers: Sequence[str], relu: bool = True) -> torch.Tensor:
    """Layer outputs {name: (B, C_l, h_l, w_l)} -> (B, H, W, sum C_l) unit-norm descriptors on the
    finest grid (see the module docstring)."""
    maps = [feats[n] for n in layers]
    h = max(m.shape[2] for m in maps)
    w = max(m.shape[3] for m in maps)
    parts = []
    for m in maps:
        m = m.float()
        if relu:
            m = F.relu(m)
        m = l2_normalize(m, dim=1)
        if m.shape[2] != h or m.shape[3] != w:
            m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
        parts.append(m)
    out = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
    return l2_normalize(out, dim=1).permute(0, 2, 3, 1)


def dense_maps(net: BackboneNet, x: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """x (B, 3, S, S) normalised -> (B, H, W, C) with H = W = S // net.out_stride and
    C = net.out_channels: ReLU'd (if ``relu``), L2-normalised per location. Differentiable."""
    return combine_layers(net(x), net.layers, relu=relu)


def global_descriptor(maps: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """maps (B, H, W, C), valid (B, H, W) bool or None -> (B, C) L2-normalised mean of the
    maps over the valid cells (all cells for an image without valid cells)."""
    if valid is None:
        pooled = maps.mean(dim=(1, 2))
    else:
        v = valid.to(maps.dtype)
        none = v.flatten(1).sum(1) == 0
        v = torch.where(none[:, None, None], torch.ones_like(v), v)
        pooled = (maps * v[..., None]).sum(dim=(1, 2)) / v.sum(dim=(1, 2))[:, None]
    return l2_normalize(pooled, dim=1)


def valid_mask(letterbox: Letterbox, stride: int) -> np.ndarray:
    """(H, W) bool: grid cells whose centre lies inside the resized image."""
    return FeatureGrid(letterbox, stride).valid_mask()


def backbone_attrs(net: BackboneNet, relu: bool) -> dict:
    """The store attrs that describe the backbone and normalisation."""
    return {
        "backbone": net.spec.name,
        "layers": list(net.layers),
        "layer_strides": [net.strides[n] for n in net.layers],
        "layer_channels": [net.channels[n] for n in net.layers],
        "input_size": net.input_size,
        "stride": net.out_stride,
        "normalisation": {
            "input_mean": list(net.spec.mean),
            "input_std": list(net.spec.std),
            "letterbox": "top-left, scale = input_size / max(h, w), padding = mean colour",
            "per_layer": "relu, L2" if relu else "L2",
            "upsampling": "bilinear to the finest layer's grid",
            "per_location": "L2 after concatenation",
        },
        "relu": bool(relu),
    }


def dense_batches(net: BackboneNet, load_image: Callable[[int], np.ndarray], n: int, relu: bool = True,
                  batch_size: int = 8) -> Iterator[tuple[list[int], torch.Tensor, np.ndarray, list[Letterbox]]]:
    """The dense maps of images 0 .. n-1, ``batch_size`` at a time: per batch (image indices,
    (B, H, W, C) maps on the net's device (:func:`dense_maps`), (B, H, W) bool valid cells, the
    images' Letterboxes). load_image(i) -> (H_i, W_i, 3) uint8. Run it under
    ``torch.inference_mode`` (or ``no_grad``)."""
    device = next(net.parameters()).device
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        xs, lbs = [], []
        for i in idx:
            x, lb = preprocess(load_image(i), net.input_size, net.spec.mean, net.spec.std)
            xs.append(x)
            lbs.append(lb)
        maps = dense_maps(net, torch.stack(xs).to(device, non_blocking=True), relu=relu)
        yield idx, maps, np.stack([valid_mask(lb, net.out_stride) for lb in lbs]), lbs


def extract_images(net: BackboneNet, load_image: Callable[[int], np.ndarray], ids: Sequence[str],
                   out_zarr: str | Path, relu: bool = True, batch_size: int = 8,
                   progress: bool = True, extra_attrs: dict | None = None,
                   dtype=np.float16) -> Path:
    """Extract dense maps of N images and write a feature store at ``out_zarr``.

    load_image(i) -> (H_i, W_i, 3) uint8 image of ``ids[i]``. Images are read, letterboxed and
    forwarded ``batch_size`` at a time under ``torch.inference_mode`` on the net's device
    (:func:`dense_batches`).
    """
    from ..progress import Progress

    n = len(ids)
    device = next(net.parameters()).device
    hw_grid = (net.out_size, net.out_size)
    attrs = backbone_attrs(net, relu)
    attrs.update(extra_attrs or {})
    attrs["image_ids"] = list(ids)
    attrs["image_hw"] = [[0, 0]] * n  # filled in below, before the store is finalised
    images_hw: list[list[int]] = [[0, 0]] * n

    from .store import FeatureStoreWriter  # zarr only where a store is written (the encoder runs without it)

    writer = FeatureStoreWriter(out_zarr, n, hw_grid, net.out_channels, attrs, dtype=dtype)
    with writer, torch.inference_mode():
        bar = Progress(total=n, desc=f"features {Path(out_zarr).stem}", unit="img", disable=not progress,
                       logger=log)
        for idx, maps, valid, lbs in dense_batches(net, load_image, n, relu=relu, batch_size=batch_size):
            glob = global_descriptor(maps, torch.from_numpy(valid).to(device))
            maps_np = maps.to(torch.float16 if np.dtype(dtype) == np.float16 else torch.float32).cpu().numpy()
            glob_np = glob.float().cpu().numpy()
            for j, i in enumerate(idx):
                images_hw[i] = [lbs[j].height, lbs[j].width]
                writer.write(i, maps_np[j], valid[j], glob_np[j])
            bar.update(len(idx))
        bar.close()
        writer.attrs["image_hw"] = images_hw
    return Path(out_zarr)


def extract_category(instances_json: str | Path, out_zarr: str | Path, backbone_cfg: dict,
                     device: str = "auto", seed: int = 0, progress: bool = True) -> Path:
    """Extract the feature store of one category.

    instances_json: the data stage's ``data/<cat>/instances.json`` (generic format + ``root``);
                    images are taken in its order (instances sorted by id).
    backbone_cfg:   the config's ``backbone`` section (name, layers, input_size, batch_size,
                    weights, relu; ``device`` there is used when ``device`` is None).
    seed:           seeds torch (extraction is deterministic anyway; kept for the contract).
    """
    from ..data.generic import load_dataset, read_image

    torch.manual_seed(int(seed))
    ds = load_dataset(instances_json, check_images=False)
    insts = sorted(ds.instances, key=lambda i: i.id)
    if not insts:
        raise DatasetError(f"{instances_json}: no instances to extract features from")
    dev = resolve_device(device or backbone_cfg.get("device", "auto"))
    net = build_backbone(backbone_cfg.get("name", DEFAULT_BACKBONE), backbone_cfg.get("input_size", 256),
                         layers=backbone_cfg.get("layers"), weights=backbone_cfg.get("weights"), device=dev)
    log.info("extracting %d images of %s with %s layers %s at %d px on %s -> grid %dx%d x %d",
             len(insts), instances_json, net.spec.name, net.layers, net.input_size, dev,
             net.out_size, net.out_size, net.out_channels)
    return extract_images(
        net, lambda i: read_image(ds.path(insts[i].image)), [i.id for i in insts], out_zarr,
        relu=bool(backbone_cfg.get("relu", True)), batch_size=int(backbone_cfg.get("batch_size", 8)),
        progress=progress,
    )
