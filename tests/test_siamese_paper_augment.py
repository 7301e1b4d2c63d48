"""Augmentation keeps images, flow and keypoints consistent (synthetic pairs with a known warp)."""
import numpy as np
import pytest
import torch

from sopcorr.siamese.paper.augment import (apply_points, augment_batch, similarity_matrices, transform_flow,
                                     warp_images)

S = 48


def _smooth_image(seed):
    """(3, S, S) smooth random image (low-frequency, so bilinear sampling is accurate)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, 6, 6, generator=g)
    return torch.nn.functional.interpolate(small, size=(S, S), mode="bicubic", align_corners=True)[0]


def _known_pair(seed):
    """Source image, target = source warped by a known similarity A; GT flow F(p) = A p - p."""
    A = similarity_matrices(torch.tensor([7.0 + seed]), torch.tensor([1.1]), S)
    A[:, 0, 2] += 2.0
    src = _smooth_image(seed)[None]
    tgt = warp_images(src, A)
    r = torch.arange(S, dtype=torch.float64)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    p = torch.stack([xx, yy], -1)[None]
    ap = apply_points(A, p)
    flow = (ap - p).permute(0, 3, 1, 2).float()
    valid = ((ap >= 0) & (ap <= S - 1)).all(-1)
    return src, tgt, flow, valid, A


def test_similarity_is_rotation_and_scale_about_centre():
    T = similarity_matrices(torch.tensor([90.0]), torch.tensor([2.0]), S)
    c = (S - 1) / 2
    pts = torch.tensor([[[c, c], [c + 1, c]]], dtype=torch.float64)
    out = apply_points(T, pts)[0]
    assert torch.allclose(out[0], torch.tensor([c, c], dtype=torch.float64))
    # +x rotated by 90 deg counter-clockwise on screen (y down) points up: (0, -2)
    assert torch.allclose(out[1] - out[0], torch.tensor([0.0, -2.0], dtype=torch.float64), atol=1e-12)


def test_identity_augmentation_changes_nothing():
    src, tgt, flow, valid, _ = _known_pair(0)
    g = torch.Generator().manual_seed(0)
    s2, t2, f2, v2, _ = augment_batch(src, tgt, flow, valid, g, rotation_deg=0.0, scale_range=(1.0, 1.0))
    assert torch.allclose(s2, src, atol=1e-5)
    assert torch.allclose(t2, tgt, atol=1e-5)
    inner = v2 & valid
    assert inner.sum() > 0.8 * valid.sum()
    assert torch.allclose(f2[:, :, inner[0]], flow[:, :, inner[0]], atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_augmented_flow_maps_corresponding_points_onto_each_other(seed):
    src, tgt, flow, valid, A = _known_pair(seed)
    B = 1
    g = torch.Generator().manual_seed(100 + seed)
    # ground-truth corresponding points: p in the source, A p in the target
    rng = np.random.default_rng(seed)
    p = torch.from_numpy(rng.uniform(8, S - 9, size=(1, 30, 2)))
    ap = apply_points(A, p)
    vis = torch.ones(1, 30, dtype=torch.bool)
    s2, t2, f2, v2, kp2 = augment_batch(src, tgt, flow, valid, g, 16.0, (0.9, 2.0),
                                        keypoints=(p.float(), ap.float(), vis))
    ks, kt, kv = kp2
    assert v2.any()
    # (1) the augmented flow, read (bilinearly) at the augmented source point, lands on the
    # augmented target point; the flow is affine in q, so bilinear reading is exact where all
    # four neighbouring pixels are valid
    x0 = torch.floor(ks[0]).long()
    ok = kv[0] & (x0 >= 0).all(-1) & (x0 <= S - 2).all(-1)
    x0 = x0.clamp(0, S - 2)
    for dx in (0, 1):
        for dy in (0, 1):
            ok &= v2[0, x0[:, 1] + dy, x0[:, 0] + dx]
    assert ok.sum() >= 3
    gxy = ((2 * ks + 1) / S - 1)[:, :, None, :]
    f_at = torch.nn.functional.grid_sample(f2, gxy, align_corners=False)[..., 0][0].T  # (K, 2)
    landed = ks[0] + f_at
    assert torch.allclose(landed[ok], kt[0][ok], atol=2e-3), (landed[ok] - kt[0][ok]).abs().max()
    # (3) images moved with their points: src2(ks) == src(p), tgt2(kt) == tgt(A p)
    def sample(img, xy):
        gxy = ((2 * xy + 1) / S - 1)[:, :, None, :].float()
        return torch.nn.functional.grid_sample(img, gxy, align_corners=False)[..., 0]
    inside = lambda z: ((z >= 1) & (z <= S - 2)).all(-1)[0]  # noqa: E731
    m = inside(ks) & inside(p.float())
    assert torch.allclose(sample(s2, ks)[..., m], sample(src, p.float())[..., m], atol=0.02)
    m = inside(kt) & inside(ap.float())
    assert torch.allclose(sample(t2, kt)[..., m], sample(tgt, ap.float())[..., m], atol=0.02)


def test_transform_flow_exact_on_valid_pixels():
    """With known source/target similarities the new flow equals T_t A T_s^-1 q - q exactly."""
    src, tgt, flow, valid, A = _known_pair(5)
    Ts = similarity_matrices(torch.tensor([-11.0]), torch.tensor([1.6]), S)
    Tt = similarity_matrices(torch.tensor([13.0]), torch.tensor([0.95]), S)
    f2, v2 = transform_flow(flow, valid, Ts, Tt)
    r = torch.arange(S, dtype=torch.float64)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    q = torch.stack([xx, yy], -1)[None]
    M = Tt @ A @ torch.linalg.inv(Ts)
    expect = (apply_points(M, q) - q).permute(0, 3, 1, 2)
    assert v2.sum() > 100
    assert torch.allclose(f2[:, :, v2[0]].double(), expect[:, :, v2[0]], atol=1e-3)
    # every valid pixel's match is inside the frame, and its pre-image was valid
    land = q + f2.permute(0, 2, 3, 1).double()
    assert torch.all((land[v2] >= -0.5) & (land[v2] <= S - 0.5))
