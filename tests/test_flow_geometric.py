"""The improved variant's matcher: robust affine fit and the affine location prior."""
import numpy as np
import pytest

from sopcorr.flow.geometric import (fit_affine_ransac, geometric_correspondence, neighbourhood_descriptors,
                                    ransac_triples)
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


def test_ransac_triples_are_numpys_choice_loop():
    """The vectorised minimal samples are exactly the triples of NumPy's ``choice`` loop they
    replace (the fits, hence every geometric result, stay the same), for the generator
    ``fit_affine_ransac`` makes and others."""
    for m in [3, 4, 5, 6, 7, 9, 17, 64, 100, 255, 256, 257, 1000, 10000, 10001]:
        for seed in range(4):
            for n in (1, 2, 7, 300):
                ref = np.random.default_rng(seed)
                want = np.stack([ref.choice(m, 3, replace=False) for _ in range(n)])
                got = ransac_triples(np.random.default_rng(seed), m, n)
                assert got.dtype == want.dtype and np.array_equal(got, want), (m, seed, n)
    half_used = np.random.default_rng(1)
    half_used.integers(0, 10, dtype=np.uint32)  # leaves half of a 64-bit output for the next draw
    ref = np.random.default_rng(1)
    ref.integers(0, 10, dtype=np.uint32)
    want = np.stack([ref.choice(50, 3, replace=False) for _ in range(20)])
    assert np.array_equal(ransac_triples(half_used, 50, 20), want)
    mt, ref = np.random.Generator(np.random.MT19937(3)), np.random.Generator(np.random.MT19937(3))
    assert np.array_equal(ransac_triples(mt, 50, 20), np.stack([ref.choice(50, 3, replace=False) for _ in range(20)]))


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


def test_gated_consensus_ignores_dissimilar_neighbours():
    # a 3x3 grid: centre c, one neighbour equal to c, one opposite (-c), the rest orthogonal
    c = np.zeros(4)
    c[0] = 1.0
    f = np.zeros((3, 3, 4))
    f[..., 1] = 1.0                      # orthogonal to the centre: cos 0
    f[1, 1] = c
    f[0, 1] = c                          # cos 1
    f[2, 1] = -c                         # cos -1
    plain = neighbourhood_descriptors(f, None, 1, gate_power=0.0).numpy()[1, 1].reshape(4, 9)
    gated = neighbourhood_descriptors(f, None, 1, gate_power=4.0).numpy()[1, 1].reshape(4, 9)
    # unfold order is row-major over the 3x3 offsets: 1 = up, 4 = centre, 7 = down
    assert np.allclose(np.linalg.norm(plain, axis=0), 1 / 3, atol=1e-6)      # nine equal blocks
    blocks = np.linalg.norm(gated, axis=0)
    assert np.allclose(blocks[[1, 4]], np.sqrt(0.5), atol=1e-6)               # centre + its twin
    assert np.allclose(np.delete(blocks, [1, 4]), 0, atol=1e-6)               # all others muted
    # gate 0 is the plain stacked descriptor of the existing behaviour
    assert np.allclose(neighbourhood_descriptors(f, None, 1).numpy(), neighbourhood_descriptors(f, None, 1, 0.0).numpy())


@pytest.mark.parametrize("radius,gate", [(0, 0.0), (1, 0.0), (1, 4.0), (2, 2.0)])
def test_consensus_similarity_equals_the_stacked_descriptors_product(radius, gate):
    """The factored similarity (one product of the plain features, read off at shifted
    offsets) against the slow exact reference: the product of the stacked descriptors, on two
    grids of different shapes with invalid cells, borders and a dissimilar neighbourhood."""
    from sopcorr.flow.geometric import consensus_similarity, consensus_terms

    rng = np.random.default_rng(radius * 10 + int(gate))
    a = rng.normal(size=(6, 7, 5)).astype(np.float32)
    b = rng.normal(size=(5, 9, 5)).astype(np.float32)
    a[2:4, 2:4] = a[3, 3]                              # a patch of equal cells (gates at 1)
    va, vb = rng.random((6, 7)) > 0.25, rng.random((5, 9)) > 0.25
    va[0, 0] = False                                   # an invalid corner (its neighbours still count)
    ref = (neighbourhood_descriptors(a, va, radius, gate).reshape(42, -1)
           @ neighbourhood_descriptors(b, vb, radius, gate).reshape(45, -1).T).numpy()
    got = consensus_similarity(consensus_terms(a, va, radius, gate), consensus_terms(b, vb, radius, gate)).numpy()
    assert got.shape == (42, 45)
    assert np.allclose(got, ref, atol=2e-6), np.abs(got - ref).max()
    assert np.abs(ref).max() > 0.5                     # the comparison is not of zeros


def test_consensus_similarity_needs_one_radius():
    from sopcorr.flow.geometric import consensus_similarity, consensus_terms

    f = np.ones((3, 3, 2), np.float32)
    with pytest.raises(ValueError, match="radius"):
        consensus_similarity(consensus_terms(f, None, 1), consensus_terms(f, None, 2))


def test_sequential_ransac_finds_two_motions():
    from sopcorr.flow.geometric import fit_affine_models

    rng = np.random.default_rng(3)
    a = rng.uniform(0, 10, size=(40, 2))
    b = rng.uniform(20, 30, size=(30, 2))
    Ma = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    Mb = np.array([[0.0, 1.0], [-1.0, 0.0], [5.0, 40.0]])         # a rotated limb
    noise = rng.uniform(0, 40, size=(10, 2))
    src = np.r_[a, b, rng.uniform(0, 30, size=(10, 2))]
    dst = np.r_[np.c_[a, np.ones(40)] @ Ma, np.c_[b, np.ones(30)] @ Mb, noise]
    models = fit_affine_models(src, dst, threshold=0.5, iterations=300, seed=0, max_models=3, min_support=0.15)
    assert len(models) == 2                                        # the outliers form no third model
    assert np.allclose(models[0].matrix, Ma, atol=1e-6) and models[0].inliers[:40].all()
    assert np.allclose(models[1].matrix, Mb, atol=1e-6) and models[1].inliers[40:70].all()
    assert not (models[0].inliers & models[1].inliers).any()
    # a support threshold above the second motion's share keeps only the first
    assert len(fit_affine_models(src, dst, threshold=0.5, seed=0, min_support=0.5)) == 1


def _articulated_pair(seed=0):
    """Top half of the grid moves 4 cells right, bottom half 4 cells left (two rigid parts)."""
    rng = np.random.default_rng(seed)
    g = 16
    src = rng.normal(size=(g, g, 24))
    tgt = rng.normal(size=(g, g, 24))
    truth = {}
    for y in range(g):
        dx = 4 if y < g // 2 else -4
        for x in range(g):
            if 0 <= x + dx < g:
                tgt[y, x + dx] = src[y, x] + 0.3 * rng.normal(size=24)
                truth[(y, x)] = (x + dx, y)
    return src, tgt, FeatureGrid(Letterbox(g * 8, g * 8, g * 8), 8), truth


def test_piecewise_prior_follows_articulation_global_does_not():
    src, tgt, grid, truth = _articulated_pair()

    def acc(corr):
        return np.mean([np.allclose(corr.target_xy[y, x], grid.cell_to_image(np.array(t, float)))
                        for (y, x), t in truth.items()])

    kw = dict(strength=40.0, consensus_radius=0, ransac_threshold=0.05, bandwidth=0.1)
    glob = geometric_correspondence(src, tgt, grid, grid, prior="global", **kw)
    piece = geometric_correspondence(src, tgt, grid, grid, prior="piecewise", **kw)
    assert acc(piece) > 0.95
    assert acc(glob) < 0.75


def test_lengths_equal_numpy_norm_bit_for_bit():
    from sopcorr.flow.geometric import _lengths

    rng = np.random.default_rng(3)
    for scale in (1e-300, 1e-3, 1.0, 1e150):
        v = rng.normal(0, scale, (50, 40, 2))
        v[0, :4] = [[np.nan, 1.0], [np.inf, 0.0], [-0.0, 0.0], [-3.0, 4.0]]
        assert _lengths(v).tobytes() == np.linalg.norm(v, axis=-1).tobytes()
