"""Geometric augmentation of training pairs, consistent between images, flow and mask.

The paper (section 6) applies rotations in [-16, 16] degrees and scalings in [0.9, 2.0] to every
pair of a mini-batch and to its ground truth. Here the source and the target image each get
their own random similarity ``T`` (rotation + isotropic scale about the canvas centre), acting on
input pixel coordinates (pixel centres at integers, x right, y down). A warped image is
``out(q) = in(T^-1 q)`` (bilinear, zero = the ImageNet mean outside). The flow becomes

    F'(q) = T_tgt( p + F(p) ) - q,   p = T_src^-1(q),

and a pixel stays valid only when ``p`` lies in the frame where the old mask is valid (bilinear
mask = 1 at all four neighbours) and the new target point lies inside the frame.
Everything is batched torch on the training device.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def similarity_matrices(angle_deg: torch.Tensor, scale: torch.Tensor, size: int) -> torch.Tensor:
    """(B,) angles (degrees, counter-clockwise on screen) and (B,) scales -> (B, 3, 3) similarity
    matrices in input pixel coordinates, about the canvas centre ((size-1)/2, (size-1)/2)."""
    a = angle_deg.double() * math.pi / 180.0
    s = scale.double()
    c = (size - 1) / 2.0
    cos, sin = torch.cos(a) * s, torch.sin(a) * s
    B = a.shape[0]
    T = torch.zeros(B, 3, 3, dtype=torch.float64, device=a.device)
    # y points down: a screen-counter-clockwise rotation is [[cos, sin], [-sin, cos]]
    T[:, 0, 0], T[:, 0, 1] = cos, sin
    T[:, 1, 0], T[:, 1, 1] = -sin, cos
    T[:, 0, 2] = c - (cos * c + sin * c)
    T[:, 1, 2] = c - (-sin * c + cos * c)
    T[:, 2, 2] = 1.0
    return T


def random_similarities(batch: int, size: int, rotation_deg: float, scale_range, generator: torch.Generator,
                        device="cpu") -> torch.Tensor:
    """(batch, 3, 3) random similarities: angle ~ U[-rotation_deg, rotation_deg], scale ~
    U[scale_range]; drawn on the CPU from ``generator`` (so they are the same on any device)."""
    u = torch.rand(batch, 2, generator=generator, dtype=torch.float64)
    ang = (2 * u[:, 0] - 1) * float(rotation_deg)
    lo, hi = float(scale_range[0]), float(scale_range[1])
    sc = lo + (hi - lo) * u[:, 1]
    return similarity_matrices(ang, sc, size).to(device)


def apply_points(T: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """T (B,3,3), xy (B, ..., 2) -> (B, ..., 2) transformed points."""
    shp = xy.shape
    p = xy.reshape(shp[0], -1, 2).to(T.dtype)
    out = p @ T[:, :2, :2].transpose(1, 2) + T[:, None, :2, 2]
    return out.reshape(shp)


def _pixel_grid(size: int, device, dtype=torch.float64) -> torch.Tensor:
    """(S, S, 2) input pixel coordinates (x, y)."""
    r = torch.arange(size, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([xx, yy], -1)


def _to_normalised(xy: torch.Tensor, size: int) -> torch.Tensor:
    """pixel coordinates -> grid_sample coordinates (align_corners=False)."""
    return (2 * xy + 1) / size - 1


def _sample(field: torch.Tensor, xy: torch.Tensor, size: int) -> torch.Tensor:
    """field (B, C, S, S), xy (B, S, S, 2) pixel coordinates -> (B, C, S, S) bilinear, zeros out."""
    g = _to_normalised(xy, size).to(field.dtype)
    return F.grid_sample(field, g, mode="bilinear", padding_mode="zeros", align_corners=False)


def warp_images(img: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """img (B, C, S, S) -> (B, C, S, S) with out(q) = img(T^-1 q)."""
    S = img.shape[-1]
    q = _pixel_grid(S, img.device).expand(img.shape[0], S, S, 2)
    p = apply_points(torch.linalg.inv(T), q)
    return _sample(img.float(), p, S).to(img.dtype)


def transform_flow(flow: torch.Tensor, valid: torch.Tensor, T_src: torch.Tensor, T_tgt: torch.Tensor):
    """Carry a flow through the source / target similarities.

    flow (B, 2, S, S) pixels, valid (B, S, S) bool -> (flow' (B, 2, S, S) float32, valid' bool)."""
    B, _, S, _ = flow.shape
    q = _pixel_grid(S, flow.device).expand(B, S, S, 2)
    p = apply_points(torch.linalg.inv(T_src), q)  # (B, S, S, 2) source point before augmentation
    stacked = torch.cat([flow.double(), valid[:, None].double()], 1)
    s = _sample(stacked, p, S)
    f, m = s[:, :2], s[:, 2]
    tgt = p + f.permute(0, 2, 3, 1)
    tq = apply_points(T_tgt, tgt)
    new = (tq - q).permute(0, 3, 1, 2)
    inside = ((tq >= -0.5) & (tq <= S - 0.5)).all(-1)
    ok = (m > 1 - 1e-6) & inside
    new = torch.where(ok[:, None], new, torch.zeros_like(new))
    return new.float(), ok


def augment_batch(src: torch.Tensor, tgt: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor,
                  generator: torch.Generator, rotation_deg: float = 16.0, scale_range=(0.9, 2.0),
                  keypoints: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None):
    """Augment a batch of pairs consistently.

    src, tgt (B,3,S,S); flow (B,2,S,S); valid (B,S,S) bool; keypoints optional
    (src_xy (B,K,2), tgt_xy (B,K,2), vis (B,K) bool) in input pixels.
    Returns (src', tgt', flow', valid', keypoints' or None); keypoints leaving the frame become
    invisible.
    """
    B, _, S, _ = src.shape
    Ts = random_similarities(B, S, rotation_deg, scale_range, generator, src.device)
    Tt = random_similarities(B, S, rotation_deg, scale_range, generator, src.device)
    src2, tgt2 = warp_images(src, Ts), warp_images(tgt, Tt)
    flow2, valid2 = transform_flow(flow, valid, Ts, Tt)
    kp2 = None
    if keypoints is not None:
        ks, kt, vis = keypoints
        ks2 = apply_points(Ts, ks).float()
        kt2 = apply_points(Tt, kt).float()
        inside = lambda z: ((z >= -0.5) & (z <= S - 0.5)).all(-1)  # noqa: E731
        kp2 = (ks2, kt2, vis & inside(ks2) & inside(kt2))
    return src2, tgt2, flow2, valid2, kp2
