"""Ward clustering: the weighted/pre-clustered paths against scipy's exact Ward."""
import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.metrics import adjusted_rand_score

from sopcorr.manifold.hac import assign_nearest, ward_clustering, weighted_ward


def _data(seed=0, n=300):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4, size=(6, 5))
    return centers[rng.integers(0, 6, n)] + rng.normal(size=(n, 5))


def test_unit_weights_equal_scipy_ward():
    for seed in range(3):
        X = _data(seed, 200)
        ref = fcluster(linkage(X, "ward"), t=7, criterion="maxclust")
        ours = weighted_ward(X, np.ones(len(X)), 7)
        assert adjusted_rand_score(ref, ours) == 1.0


def test_exact_path_equals_scipy():
    X = _data(3, 150)
    ref = fcluster(linkage(X, "ward"), t=5, criterion="maxclust")
    assert adjusted_rand_score(ref, ward_clustering(X, 5, exact_max_samples=1000)) == 1.0


def test_weights_act_like_repeated_points():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 3))
    w = rng.integers(1, 4, 40)
    rep = np.repeat(X, w, axis=0)
    ref = fcluster(linkage(rep, "ward"), t=4, criterion="maxclust")
    ours = weighted_ward(X, w.astype(float), 4)
    # each repeated point's cluster equals its original's; duplicates merge first (cost 0)
    assert adjusted_rand_score(ref, np.repeat(ours, w)) == 1.0


def test_precluster_path_recovers_well_separated_clusters():
    rng = np.random.default_rng(5)
    centers = rng.normal(scale=10, size=(8, 6))
    truth = rng.integers(0, 8, 6000)
    X = (centers[truth] + rng.normal(size=(6000, 6))).astype(np.float32)
    lab = ward_clustering(X, 8, exact_max_samples=1000, precluster=60, fit_samples=2000, random_state=0)
    assert lab.shape == (6000,) and set(lab) == set(range(8))
    assert adjusted_rand_score(truth, lab) > 0.99
    again = ward_clustering(X, 8, exact_max_samples=1000, precluster=60, fit_samples=2000, random_state=0)
    assert np.array_equal(lab, again)


def test_assign_nearest_chunks():
    rng = np.random.default_rng(6)
    X, C = rng.normal(size=(1000, 4)), rng.normal(size=(9, 4))
    ref = np.argmin(((X[:, None] - C[None]) ** 2).sum(-1), 1)
    assert np.array_equal(assign_nearest(X, C, chunk=77), ref)
