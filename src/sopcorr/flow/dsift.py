"""Dense SIFT descriptors on a grid with OpenCV's SIFT (``cv2.SIFT_create().compute``).

*Radius -> KeyPoint.size.* OpenCV's SIFT descriptor of a keypoint of size ``s`` is a 4 x 4
grid of spatial cells, each ``3 sigma`` wide with ``sigma = s / 2`` (SIFT_DESCR_SCL_FCTR = 3),
so the descriptor window is ``4 * 3 * s / 2 = 6 s`` pixels wide. We call *radius* ``r`` the
half-width of that window: ``r = 3 s``, i.e. ``KeyPoint.size = r / 3``, each spatial cell is
``r / 2`` pixels wide (radius 20 -> 10 px cells, 40 -> 20 px, 80 -> 40 px). The window is
Gaussian-weighted with sigma = half its width, as in SIFT. Keypoints are given octave 0 and
angle 0 (upright, no orientation assignment); OpenCV then samples the descriptor from the
base image of its pyramid (the input blurred to sigma 1.6), whatever the radius; with
``scale_space=True`` the keypoint is given the pyramid octave/layer of its scale instead.

Descriptors are returned L2-normalised (OpenCV's normalise-clip-renormalise, then float
L2 normalisation), or as RootSIFT (Arandjelovic & Zisserman 2012: L1-normalise, square root,
which is L2-normalised). A descriptor of a flat region (all zeros) stays zero.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import SopcorrError
from ..geometry import FeatureGrid

__all__ = ["dense_sift", "grid_points", "radius_to_size", "scale_space_octave"]


def radius_to_size(radius: float) -> float:
    """KeyPoint.size giving a descriptor window of half-width ``radius`` pixels (size = r / 3)."""
    return float(radius) / 3.0


def grid_points(image_hw: tuple[int, int], grid: FeatureGrid | None = None,
                step: int | None = None) -> np.ndarray:
    """(H, W, 2) image coordinates (x, y) where descriptors are sampled: the cell centres of
    ``grid`` (a FeatureGrid of this image's letterbox), or a regular grid of ``step`` pixels
    with centres at ((c + 0.5) step - 0.5, (r + 0.5) step - 0.5), floor(h / step) x
    floor(w / step) cells."""
    if grid is not None:
        return grid.cell_centers_image()
    if step is None or step < 1:
        raise SopcorrError(f"dense_sift: give a FeatureGrid or a step >= 1 (got step={step})")
    h, w = image_hw
    nh, nw = max(1, h // step), max(1, w // step)
    xs = (np.arange(nw) + 0.5) * step - 0.5
    ys = (np.arange(nh) + 0.5) * step - 0.5
    return np.stack(np.meshgrid(xs, ys), axis=-1)


def _to_gray_u8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[..., :3]
        if img.dtype != np.uint8:
            img = _to_u8(img)
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    if img.ndim != 2:
        raise SopcorrError(f"dense_sift: image must be (H, W) or (H, W, 3), got shape {img.shape}")
    return np.ascontiguousarray(img if img.dtype == np.uint8 else _to_u8(img))


def _to_u8(img: np.ndarray) -> np.ndarray:
    f = img.astype(np.float32)
    if f.size and f.max() <= 1.0 + 1e-6:
        f = f * 255.0
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def scale_space_octave(radius: float, sigma0: float = 1.6, n_layers: int = 3) -> tuple[int, int]:
    """(octave, layer) of OpenCV's SIFT pyramid whose blur sigma0 * 2^(octave + layer/n_layers)
    is closest to the keypoint's scale sigma = size / 2 = radius / 6 (octave >= 0)."""
    t = max(0.0, float(np.log2(max(radius / 6.0, 1e-6) / sigma0)))
    o = int(np.floor(t))
    layer = int(round((t - o) * n_layers))
    if layer >= n_layers:
        o, layer = o + 1, 0
    return o, layer


def dense_sift(image: np.ndarray, radius: float = 20, grid: FeatureGrid | None = None,
               step: int | None = None, root: bool = False,
               points: np.ndarray | None = None, scale_space: bool = False) -> np.ndarray:
    """Dense SIFT descriptors.

    image: (h, w) or (h, w, 3) RGB, uint8 or float (floats <= 1 are taken as [0, 1]);
    radius: half-width of the descriptor window in image pixels (KeyPoint.size = radius / 3);
    grid: a FeatureGrid of this image (descriptors at its cell centres, so they sit on the same
    cells as CNN features; cells in the letterbox padding get the descriptor of whatever lies
    there, use ``grid.valid_mask()``); or step: a regular grid of ``step`` pixels; or points:
    an explicit (..., 2) array of (x, y) image coordinates;
    root: RootSIFT instead of L2-normalised SIFT;
    scale_space: sample each descriptor from the SIFT pyramid level matching its scale
    (:func:`scale_space_octave`: blurred and downsampled as in SIFT proper, 4x faster per
    octave) instead of the full-resolution base image.

    Returns (H, W, 128) float32 (or points.shape[:-1] + (128,)), each descriptor of unit L2
    norm (zero for a flat region)."""
    if radius <= 0:
        raise SopcorrError(f"dense_sift: radius must be positive, got {radius}")
    gray = _to_gray_u8(image)
    pts = np.asarray(points, np.float64) if points is not None else grid_points(gray.shape, grid, step)
    lead = pts.shape[:-1]
    flat = pts.reshape(-1, 2)
    size = radius_to_size(radius)
    octave = 0
    if scale_space:
        o, layer = scale_space_octave(radius)
        octave = (o & 255) | (layer << 8)
    kps = [cv2.KeyPoint(float(x), float(y), size, 0.0, 0.0, octave, -1) for x, y in flat]
    sift = cv2.SIFT_create()
    out_kps, desc = sift.compute(gray, kps) if kps else ((), np.zeros((0, 128), np.float32))
    if desc is None or len(out_kps) != len(kps):
        # should OpenCV drop keypoints (other versions filter some near the border), describe
        # them one by one; a dropped one stays zero
        desc = np.zeros((len(kps), 128), np.float32)
        for i, kp in enumerate(kps):
            _, d1 = sift.compute(gray, [kp])
            if d1 is not None and len(d1):
                desc[i] = d1[0]
    desc = desc.astype(np.float32)
    if root:
        desc /= np.maximum(desc.sum(1, keepdims=True), 1e-12)
        desc = np.sqrt(desc)
    else:
        desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
    return desc.reshape(lead + (128,))
