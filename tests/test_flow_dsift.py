"""sopcorr.flow.dsift: dense SIFT on grids (OpenCV)."""
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from sopcorr.errors import SopcorrError
from sopcorr.flow.dsift import dense_sift, radius_to_size
from sopcorr.geometry import FeatureGrid, Letterbox


def _texture(seed=0, shape=(160, 200)):
    rng = np.random.default_rng(seed)
    return np.clip((gaussian_filter(rng.random(shape), 2) - 0.5) * 2000 + 128, 0, 255).astype(np.uint8)


def test_shapes_norms_and_grid_alignment():
    img = _texture()
    g = FeatureGrid(Letterbox(160, 200, 128), 8)             # 16 x 16 cells, bottom rows padding
    d = dense_sift(img, 20, grid=g)
    assert d.shape == (16, 16, 128) and d.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(d[g.valid_mask()], axis=-1), 1.0, atol=1e-5)
    # the descriptor of cell (r, c) is the one at the cell centre in image coordinates
    pts = g.cell_centers_image()[3:5, 4:6]
    np.testing.assert_allclose(dense_sift(img, 20, points=pts), d[3:5, 4:6], atol=1e-6)


def test_step_grid_and_rootsift():
    img = _texture(1)
    d = dense_sift(img, 40, step=10)
    assert d.shape == (16, 20, 128)
    r = dense_sift(img, 40, step=10, root=True)
    np.testing.assert_allclose(np.linalg.norm(r, axis=-1), 1.0, atol=1e-5)
    # RootSIFT is the square root of the L1-normalised SIFT
    np.testing.assert_allclose(r ** 2, d / d.sum(-1, keepdims=True), atol=1e-5)


def test_radius_sets_the_support():
    """A change of the image farther than the radius (plus interpolation margin) from a point
    leaves its descriptor unchanged; a change within the radius alters it."""
    img = _texture(2, (200, 200))
    pt = np.array([[100.0, 100.0]])
    base = {r: dense_sift(img, r, points=pt) for r in (20, 40)}
    far = img.copy()
    far[:, 150:] = 0                                         # 50 px right of the point
    assert np.allclose(dense_sift(far, 20, points=pt), base[20], atol=1e-6)
    assert not np.allclose(dense_sift(far, 40, points=pt), base[40], atol=1e-3)
    assert radius_to_size(30) == pytest.approx(10.0)


def test_flat_image_gives_zero_and_colour_ok():
    flat = np.full((64, 64, 3), 90, np.uint8)
    d = dense_sift(flat, 20, step=16)
    assert np.all(np.isfinite(d)) and np.allclose(d, 0)
    col = np.stack([_texture(3, (64, 64))] * 3, -1)
    np.testing.assert_allclose(dense_sift(col, 20, step=16), dense_sift(col[..., 0], 20, step=16), atol=1e-6)
    flt = col.astype(np.float32) / 255.0
    np.testing.assert_allclose(dense_sift(flt, 20, step=16), dense_sift(col, 20, step=16), atol=1e-6)


def test_bad_input():
    with pytest.raises(SopcorrError):
        dense_sift(np.zeros((4, 4, 4, 4)), 20, step=2)
    with pytest.raises(SopcorrError):
        dense_sift(_texture(), 0, step=8)
    with pytest.raises(SopcorrError):
        dense_sift(_texture(), 20)


def test_scale_space_option_is_scale_covariant():
    """Radius 2r on an image vs radius r on the image halved: the same descriptors (both
    modes); scale_space samples a coarser pyramid level but describes the same structure."""
    import cv2

    from sopcorr.flow.dsift import scale_space_octave

    img = np.clip((gaussian_filter(np.random.default_rng(7).random((240, 240)), 3) - 0.5) * 3000 + 128,
                  0, 255).astype(np.uint8)
    small = cv2.resize(img, (120, 120), interpolation=cv2.INTER_AREA)
    pts = np.stack(np.meshgrid(np.arange(80, 160, 16.0) + 0.5, np.arange(80, 160, 16.0) + 0.5), -1)
    for ss in (False, True):
        a = dense_sift(img, 60, points=pts, scale_space=ss)
        b = dense_sift(small, 30, points=(pts + 0.5) / 2 - 0.5, scale_space=ss)
        assert (a * b).sum(-1).mean() > 0.95
    plain = dense_sift(img, 60, points=pts)
    assert (plain * dense_sift(img, 60, points=pts, scale_space=True)).sum(-1).mean() > 0.7
    assert scale_space_octave(20) == (1, 0) and scale_space_octave(80) == (3, 0)
    assert scale_space_octave(5) == (0, 0)
