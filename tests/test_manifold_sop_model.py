"""Gaussian part models: log-space posteriors, priors, shrinkage."""
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from sopcorr.manifold.sop_model import PartModels, fit_part_models


def test_posterior_matches_bayes_rule():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (200, 3)), rng.normal(3, 0.5, (100, 3))])
    y = np.array([0] * 200 + [1] * 100)
    m = fit_part_models(X, y, 2, shrinkage=0.0)
    np.testing.assert_allclose(np.exp(m.log_priors), [2 / 3, 1 / 3])
    q = rng.normal(1.5, 1, (10, 3))
    lik = np.stack([multivariate_normal(m.means[k], m.covariances[k]).pdf(q) for k in range(2)], 1)
    post = lik * np.exp(m.log_priors)
    post /= post.sum(1, keepdims=True)
    np.testing.assert_allclose(np.exp(m.log_posterior(q)), post, rtol=1e-4, atol=1e-6)
    # far away points: no underflow in log space, still a distribution
    lp = m.log_posterior(np.full((2, 3), 1e3))
    assert np.all(np.isfinite(lp)) and np.allclose(np.exp(lp).sum(1), 1, atol=1e-5)


def test_temperature_flattens_and_uniform_prior():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 2))
    y = (X[:, 0] > 0.5).astype(int)
    m = fit_part_models(X, y, 2)
    q = rng.normal(size=(50, 2))
    top1 = np.exp(m.log_posterior(q)).max(1)
    top5 = np.exp(m.log_posterior(q, temperature=5.0)).max(1)
    assert np.all(top5 <= top1 + 1e-6)
    u = m.log_posterior(q, uniform_prior=True)
    assert np.allclose(np.exp(u).sum(1), 1, atol=1e-5)


def test_shrinkage_keeps_degenerate_parts_positive_definite_and_empty_parts():
    X = np.zeros((10, 4))
    X[:5, 0] = np.arange(5)  # rank-1 part
    y = np.array([0] * 5 + [1] * 5)
    m = fit_part_models(X, y, 3, shrinkage=0.1)
    for c in m.covariances:
        assert np.linalg.eigvalsh(c).min() > 0
    assert m.counts[2] == 0
    again = PartModels.from_state(m.state())
    np.testing.assert_allclose(again.log_posterior(X), m.log_posterior(X))


def test_chunks_and_threads_do_not_change_the_models_or_the_posteriors():
    # the chunked sums, the chunked normalisation and the per-part threads give the same bits
    # (the triangular solves keep their chunks: BLAS may round a few columns differently)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(1000, 5)).astype(np.float32)
    y = rng.integers(0, 4, 1000)
    y[y == 3] = 0  # an empty part
    m = fit_part_models(X, y, 4, chunk=1 << 20)
    for chunk in (1, 77):
        again = fit_part_models(X, y, 4, chunk=chunk)
        for k, v in m.state().items():
            assert np.array_equal(again.state()[k], v)
    for chunk in (77, 1 << 20):
        ref = m.log_likelihood(X, chunk=chunk, workers=1)
        for workers in (2, 3, None):
            assert np.array_equal(m.log_likelihood(X, chunk=chunk, workers=workers), ref)
    lp = m.log_posterior(X, temperature=2.0, chunk=1 << 20)
    assert np.array_equal(m.log_posterior(X, temperature=2.0, chunk=77), lp)
    np.testing.assert_allclose(np.exp(lp).sum(1), 1, rtol=1e-5)


def test_a_non_finite_row_is_refused():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(50, 3))
    m = fit_part_models(X, rng.integers(0, 2, 50), 2)
    X[7, 1] = np.nan
    with pytest.raises(ValueError, match="infs or NaNs"):
        m.log_likelihood(X)
