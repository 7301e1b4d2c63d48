import numpy as np

from evaluate_toys import exact_method, toy_context
from sopcorr.evaluate.keypoints import choose_absence_threshold, run_keypoint_evaluation, vote_names
from sopcorr.evaluate.retrieval import retrieve


def test_retrieval_orders_by_distance_excludes_self_and_breaks_ties_by_index():
    g = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]])
    nb = retrieve(g, [0, 2], [0, 1, 2, 3, 4], 3)
    assert nb.tolist() == [[1, 4, 3], [3, 1, 4]]
    # descriptors are normalised: scaling one does not change the ranking
    g2 = g.copy()
    g2[3] *= 7
    assert retrieve(g2, [0, 2], [0, 1, 2, 3, 4], 3).tolist() == nb.tolist()


def test_absence_threshold():
    # visible entries with high scores are correct; invisible ones have low scores
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    correct = np.array([True, True, True, True, True])
    visible = np.array([True, True, True, False, False])
    assert choose_absence_threshold(scores, correct, visible) == 0.7
    # everything visible: never predict absence
    assert choose_absence_threshold(scores, correct, np.ones(5, bool)) == -np.inf
    # NaN scores are never present
    assert choose_absence_threshold(np.array([np.nan, 0.5]), np.array([False, True]),
                                    np.array([False, True])) == -np.inf


def test_vote_names_distance_weighted():
    q = np.array([[0.0, 0.0], [10.0, 0.0]])
    cand = np.array([[0.5, 0.0], [1.0, 0.0], [9.0, 0.0], [4.0, 0.0]])
    names = np.array([0, 0, 1, 2])
    assert vote_names(q, cand, names, 3, sigma=1.0).tolist() == [0, 1]
    # far away from everything: the nearest candidate's name
    assert vote_names(np.array([[1000.0, 0.0]]), cand, names, 3, sigma=1.0).tolist() == [1]


def test_keypoint_protocol_exact_method_is_perfect_and_shift_fails():
    ctx = toy_context()
    loc, cls, preds, _ = run_keypoint_evaluation(ctx, [exact_method("exact"), exact_method("exact_p", prior=True)],
                                              k=3, alpha=0.1)
    byname = {r["method"]: r for r in loc}
    assert byname["exact"]["value"] == 100.0 and byname["exact"]["total"] == 3 * 4
    assert byname["exact_p"]["value"] == 100.0
    assert [r["method"] for r in cls] == ["exact_transfer"] and cls[0]["value"] == 100.0
    assert len(preds["exact"]) == 3
    loc, cls, _, _ = run_keypoint_evaluation(ctx, [exact_method("far", shift=(20.0, 0.0))], k=3, alpha=0.1)
    assert loc[0]["value"] == 0.0


def test_missed_visible_keypoint_counts_as_wrong():
    # keypoint 'a' invisible in every training object: nothing to transfer, so the visible
    # 'a' of test objects is missed
    inv = {(i, "a") for i in range(10) if i % 4 != 0}
    ctx = toy_context(invisible=inv)
    loc, _, preds, _ = run_keypoint_evaluation(ctx, [exact_method()], k=3, alpha=0.1)
    assert loc[0]["total"] == 12 and loc[0]["correct"] == 9
    assert preds["exact"][0]["present"][0] is False
