"""KernelFisherDiscriminant: scikit-learn contract, exact vs landmark mode, separation vs PCA."""
import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from sopcorr.manifold.kfd import KernelFisherDiscriminant, between_subclass_scatter, polynomial_kernel

# n_components=2: sklearn's check data has 2-3 classes; small landmark count keeps checks fast.
# Sklearn checks fit transformers on a single class in a few places: those are xfailed with a
# reason (a Fisher discriminant needs >= 2 classes and says so with a ValueError).
_EXPECTED_FAILED: dict[str, str] = {}  # none needed at present


@parametrize_with_checks([KernelFisherDiscriminant(n_components=2, n_landmarks=20, random_state=0)],
                         expected_failed_checks=lambda est: _EXPECTED_FAILED)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _blobs(rng, n_per=60, n_classes=4, dim=10, noise=1.0):
    """Classes that differ only in a non-linear way: same mean, different radius shells."""
    X, y = [], []
    for c in range(n_classes):
        v = rng.normal(size=(n_per, dim))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        X.append(v * (1.0 + c) + noise * 0.15 * rng.normal(size=(n_per, dim)))
        y.append(np.full(n_per, c))
    return np.concatenate(X), np.concatenate(y)


def test_landmark_mode_agrees_with_exact_mode():
    rng = np.random.default_rng(0)
    X, y = _blobs(rng, n_per=80)
    X /= np.abs(X).max()
    exact = KernelFisherDiscriminant(n_components=3, mode="exact", random_state=0).fit(X, y)
    land = KernelFisherDiscriminant(n_components=3, mode="landmark", n_landmarks=150, random_state=0).fit(X, y)
    assert exact.mode_ == "exact" and land.mode_ == "landmark"
    assert land.basis_.shape[0] == 150 and exact.basis_.shape[0] == len(X)
    Xt, yt = _blobs(np.random.default_rng(1), n_per=40)
    Xt /= np.abs(X).max() * 0 + np.abs(Xt).max()
    ze, zl = exact.transform(Xt), land.transform(Xt)
    # nearest-neighbour structure of the two embeddings agrees
    nn_e = KNeighborsClassifier(1).fit(ze, yt).kneighbors(ze, 2, return_distance=False)[:, 1]
    nn_l = KNeighborsClassifier(1).fit(zl, yt).kneighbors(zl, 2, return_distance=False)[:, 1]
    assert np.mean(yt[nn_e] == yt[nn_l]) >= 0.95
    # and the subspaces nearly coincide: canonical correlations of the two embeddings
    a = ze - ze.mean(0)
    b = zl - zl.mean(0)
    qa, _ = np.linalg.qr(a)
    qb, _ = np.linalg.qr(b)
    cos = np.linalg.svd(qa.T @ qb, compute_uv=False)
    assert cos.min() > 0.9


def test_kfd_separates_classes_better_than_pca():
    rng = np.random.default_rng(2)
    X, y = _blobs(rng, n_per=60)
    X /= np.abs(X).max()
    Xt, yt = _blobs(np.random.default_rng(3), n_per=60)
    Xt /= np.abs(X).max() * 0 + np.abs(Xt).max()
    kfd = KernelFisherDiscriminant(n_components=3, degree=2, random_state=0).fit(X, y)
    pca = PCA(3).fit(X)
    acc_kfd = KNeighborsClassifier(5).fit(kfd.transform(X), y).score(kfd.transform(Xt), yt)
    acc_pca = KNeighborsClassifier(5).fit(pca.transform(X), y).score(pca.transform(Xt), yt)
    assert acc_kfd > acc_pca + 0.2, (acc_kfd, acc_pca)


def test_subclasses_give_more_than_c_minus_1_directions():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 12))
    y = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)  # 4 classes -> 3 directions without subclasses
    plain = KernelFisherDiscriminant(n_components=8, degree=1, mode="exact", random_state=0).fit(X, y)
    sub = KernelFisherDiscriminant(n_components=8, degree=1, mode="exact", subclasses=3, random_state=0).fit(X, y)
    assert np.sum(plain.all_eigenvalues_ > 1e-6) <= 3
    assert np.sum(sub.eigenvalues_ > 1e-3) > 3
    assert sub.n_subclasses_ == 12


def test_between_subclass_scatter_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(7, 3))
    p = rng.random(7)
    p /= p.sum()
    owner = np.array([0, 0, 0, 1, 1, 2, 2])
    brute = np.zeros((3, 3))
    for i in range(7):
        for j in range(7):
            if owner[i] != owner[j]:
                d = mu[i] - mu[j]
                brute += p[i] * p[j] * np.outer(d, d)
    np.testing.assert_allclose(between_subclass_scatter(mu, p, owner), brute, atol=1e-12)


def test_state_round_trip():
    rng = np.random.default_rng(5)
    X, y = _blobs(rng, n_per=30)
    kfd = KernelFisherDiscriminant(n_components=3, mode="landmark", n_landmarks=50, random_state=0).fit(X, y)
    again = KernelFisherDiscriminant.from_state(kfd.state())
    np.testing.assert_allclose(again.transform(X), kfd.transform(X), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(kfd.embed(X.astype(np.float16)), kfd.transform(X.astype(np.float16)), rtol=1e-4, atol=1e-4)


def test_rejects_single_class():
    with pytest.raises(ValueError, match="2 classes"):
        KernelFisherDiscriminant().fit(np.ones((5, 2)), np.zeros(5))


@pytest.mark.parametrize("degree", [2, 3])
def test_embed_in_reused_buffers_equals_the_plain_kernel_product(degree):
    # embed computes the kernel chunk by chunk in two reused buffers: the same bits as
    # polynomial_kernel(chunk, basis) @ projection + offset on the same chunks (BLAS may round a
    # product of a few rows differently from one of many, so the chunks are the same)
    rng = np.random.default_rng(6)
    X, y = _blobs(rng, n_per=40)
    kfd = KernelFisherDiscriminant(n_components=3, degree=degree, mode="landmark", n_landmarks=30,
                                   random_state=0).fit(X, y)
    X16 = X.astype(np.float16)
    for dtype, kdt in ((np.float32, np.float32), (np.float64, np.float64)):
        b, P = kfd.basis_.astype(kdt), kfd.projection_.astype(kdt)
        for chunk in (1, 7, 32768):
            ref = np.concatenate([polynomial_kernel(X16[s:s + chunk], b, degree, kfd.coef0, kdt) @ P + kfd.offset_
                                  for s in range(0, len(X16), chunk)]).astype(dtype)
            assert np.array_equal(kfd.embed(X16, chunk=chunk, dtype=dtype), ref)
