"""The improved variant's matcher: robust affine fit and the affine location prior."""
import numpy as np

from sopcorr.flow.geometric import fit_affine_ransac, geometric_correspondence, neighbourhood_descriptors
from sopcorr.geometry import FeatureGrid, Letterbox


def test_ransac_recovers_affine_despite_outliers():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 30, size=(60, 2))
    M = np.array([[0.9, 0.2], [-0.1, 1.1], [3.0, -2.0]])
    dst = np.c_[src, np.ones(60)] @ M
    out = rng.choice(60, 20, replace=False)
    dst[out] = rng.uniform(0, 30, size=(20, 2))
    aff = fit_affine_ransac(src, dst, threshold=0.5, iterations=200, seed=1)
    assert np.allclose(aff.matrix, M, atol=1e-6)
    inl = np.ones(60, bool)
    inl[out] = False
    # outliers far from the model are rejected; every true inlier is kept
    assert aff.inliers[inl].all()
    assert aff.inliers.sum() <= 60 - 15


def test_too_few_matches_gives_identity():
    aff = fit_affine_ransac(np.zeros((2, 2)), np.ones((2, 2)))
    assert np.allclose(aff.apply(np.array([[3.0, 4.0]])), [[3.0, 4.0]])
    assert not aff.inliers.any()


def _pair(distractors: float, seed=0):
    rng = np.random.default_rng(seed)
    g = 16
    src = rng.normal(size=(g, g, 24))
    shift = (2, 1)                                      # target cell = source cell + (dx, dy)
    tgt = rng.normal(size=(g, g, 24))
    tgt[shift[1]:, shift[0]:] = src[: g - shift[1], : g - shift[0]] + 0.3 * rng.normal(size=(g - shift[1], g - shift[0], 24))
    # exact copies of some source descriptors far from where they belong
    n = int(distractors * g * g)
    ys, xs = rng.integers(0, g - shift[1], n), rng.integers(0, g - shift[0], n)
    for y, x in zip(ys, xs):
        ty, tx = (y + g // 2) % g, (x + g // 2) % g
        tgt[ty, tx] = src[y, x]
    grid = FeatureGrid(Letterbox(g * 8, g * 8, g * 8), 8)
    return src, tgt, grid, shift, list(zip(ys, xs))


def _accuracy(corr, grid, shift, cells):
    ok = []
    for y, x in cells:
        want = grid.cell_to_image(np.array([x + shift[0], y + shift[1]], float))
        ok.append(np.allclose(corr.target_xy[y, x], want))
    return np.mean(ok)


def test_prior_overrides_distant_lookalikes():
    src, tgt, grid, shift, cells = _pair(0.15)
    overwritten = {((y + 8) % 16, (x + 8) % 16) for y, x in cells}
    # cells whose true match was not itself overwritten by another copy
    cells = [(y, x) for y, x in cells if (y + shift[1], x + shift[0]) not in overwritten]
    plain = geometric_correspondence(src, tgt, grid, grid, strength=0.0, consensus_radius=0)
    prior = geometric_correspondence(src, tgt, grid, grid, strength=20.0, consensus_radius=0,
                                     ransac_threshold=0.05)
    assert _accuracy(plain, grid, shift, cells) < 0.5
    assert _accuracy(prior, grid, shift, cells) > 0.9


def test_neighbourhood_descriptor_shape_and_norm():
    f = np.random.default_rng(0).normal(size=(5, 6, 3))
    d = neighbourhood_descriptors(f, None, 1).numpy()
    assert d.shape == (5, 6, 27)
    assert np.allclose(np.linalg.norm(d, axis=-1), 1, atol=1e-5)
    # centre block equals the normalised input
    centre = d[2, 3].reshape(3, 3, 3)[:, 1, 1]
    assert np.allclose(centre / np.linalg.norm(centre), f[2, 3] / np.linalg.norm(f[2, 3]), atol=1e-5)


def test_concat_descriptors_weights_the_embedding_share():
    from sopcorr.flow.geometric import concat_descriptors

    rng = np.random.default_rng(0)
    raw, emb = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 2))
    d = concat_descriptors(raw, emb, 0.5)
    assert d.shape == (3, 4, 7)
    assert np.allclose(np.linalg.norm(d[..., :5], axis=-1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(d[..., 5:], axis=-1), 0.5, atol=1e-5)
    assert np.allclose(concat_descriptors(raw, emb, 0.0), concat_descriptors(raw, None, 1.0))


def test_forward_backward_marks_inconsistent_cells():
    from sopcorr.flow.geometric import forward_backward_valid
    from sopcorr.geometry import DenseCorrespondence

    g = 6
    grid = FeatureGrid(Letterbox(g * 8, g * 8, g * 8), 8)
    centres = grid.cell_centers_image()
    ident = DenseCorrespondence(centres.copy(), np.ones((g, g)), np.ones((g, g), bool), grid, "nearest")
    assert forward_backward_valid(ident, ident, grid, 0.5).all()
    # the backward map sends cell (0, 0) far away: only that cell's round trip fails
    back = DenseCorrespondence(centres.copy(), np.ones((g, g)), np.ones((g, g), bool), grid, "nearest")
    back.target_xy[0, 0] = centres[5, 5]
    ok = forward_backward_valid(ident, back, grid, 0.5)
    assert not ok[0, 0] and ok.sum() == g * g - 1
