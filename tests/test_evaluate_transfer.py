import numpy as np

from evaluate_toys import exact_correspondence, exact_method, toy_context
from sopcorr.evaluate.pairs import pair_counts, run_pair_evaluation
from sopcorr.evaluate.transfer import (NeighbourTransfer, aggregate, box_normalise, prior_weights,
                                       transfer_points)


def test_exact_affine_transfer_is_exact():
    ctx = toy_context()
    corr = exact_correspondence(1, 2)
    kp1, kp2 = ctx.keypoints(1), ctx.keypoints(2)
    xy, score, ok = transfer_points(corr, kp1[:, :2])
    assert ok.all()
    np.testing.assert_allclose(xy, kp2[:, :2], atol=1e-9)


def test_pair_pck_exact_is_100_and_shift_gives_fraction():
    ctx = toy_context()
    res = run_pair_evaluation(ctx, [exact_method()], [0.05, 0.1])
    assert all(r["value"] == 100.0 for r in res)
    # box of instance 2 is 36 px: a 2.5 px shift is within 0.1*36 = 3.6 but not 0.05*36 = 1.8
    corr = exact_correspondence(1, 2, shift=(2.5, 0.0))
    out = pair_counts(corr, ctx.keypoints(1), ctx.keypoints(2), ctx.bbox(2), [0.05, 0.1])
    assert out[0.05] == (0, 4) and out[0.1] == (4, 4)


def test_invalid_cells_count_as_missed():
    ctx = toy_context()
    corr = exact_correspondence(1, 2)
    corr.valid[:] = False
    out = pair_counts(corr, ctx.keypoints(1), ctx.keypoints(2), ctx.bbox(2), [0.1])
    assert out[0.1] == (0, 4)


def test_only_keypoints_visible_in_both_count():
    ctx = toy_context(invisible={(1, "a"), (2, "b")})
    out = pair_counts(exact_correspondence(1, 2), ctx.keypoints(1), ctx.keypoints(2), ctx.bbox(2), [0.1])
    assert out[0.1] == (2, 2)


def test_aggregate_mean_and_score_average_over_k():
    xy = np.array([[[10.0, 10.0]], [[20.0, 30.0]], [[np.nan, np.nan]]])
    nt = NeighbourTransfer(xy, np.array([[0.5], [1.0], [np.nan]]), np.array([[True], [True], [False]]),
                           np.zeros((3, 1, 2)))
    loc, score = aggregate(nt)
    np.testing.assert_allclose(loc, [[15.0, 20.0]])
    np.testing.assert_allclose(score, [0.5])  # (0.5 + 1.0 + 0) / 3


def test_prior_downweights_outlier():
    # neighbours agree the keypoint sits at the box centre; one transfer lands in a corner
    src = np.full((3, 1, 2), 0.5)
    xy = np.array([[[50.0, 50.0]], [[52.0, 50.0]], [[95.0, 95.0]]])
    nt = NeighbourTransfer(xy, np.ones((3, 1)), np.ones((3, 1), bool), src)
    g = prior_weights(nt, (0, 0, 100, 100), sigma_min=0.1)
    assert g[2, 0] < 1e-3 < g[0, 0]
    loc, _ = aggregate(nt, g)
    assert abs(loc[0, 0] - 51.0) < 0.5
    np.testing.assert_allclose(box_normalise([[50, 25]], (0, 0, 100, 50)), [[0.5, 0.5]])
