"""Keypoint localisation (paper Table 2) and keypoint classification by transfer (Table 1 (b)).

Protocol (Long, Zhang & Darrell 2014, as the paper uses it): for a query object, retrieve the K
nearest training objects (``retrieval``), compute the dense correspondence neighbour -> query
with a method, transfer the neighbours' visible keypoints, average per keypoint name
(``transfer.aggregate``), and predict a name absent when its score is below a threshold chosen on
the train split. PCK@alpha of max(query box h, w) over the query's visible ground-truth
keypoints; a visible keypoint predicted absent counts as wrong.

The absence threshold maximises, over train-split queries (each retrieving among the other
training objects), the fraction of declared keypoint names handled correctly: a visible name
predicted present within alpha, or a not-visible/unannotated name predicted absent. Candidates are
-inf (never absent) and every observed score; ties go to the lowest threshold.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .pck import box_size, correct_keypoints
from .transfer import NeighbourTransfer, aggregate, prior_weights

log = logging.getLogger(__name__)


def choose_absence_threshold(scores: np.ndarray, correct_if_present: np.ndarray,
                             visible: np.ndarray) -> float:
    """scores, correct_if_present, visible: (M,) over (query, name) entries of the train split.
    A prediction is present when score >= threshold (NaN scores: never present). Returns the
    threshold maximising (#visible & present & correct + #not visible & absent) / M."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    c = np.asarray(correct_if_present, bool).reshape(-1)
    v = np.asarray(visible, bool).reshape(-1)
    fin = np.isfinite(s)
    cands = np.concatenate([[-np.inf], np.unique(s[fin])])
    best, best_t = -1.0, -np.inf
    for t in cands:
        present = fin & (s >= t)
        acc = np.mean((v & present & c) | (~v & ~present)) if len(s) else 0.0
        if acc > best + 1e-12:
            best, best_t = acc, float(t)
    return best_t


def vote_names(query_xy: np.ndarray, cand_xy: np.ndarray, cand_name: np.ndarray,
               n_names: int, sigma: float) -> np.ndarray:
    """Distance-weighted vote: each query point (V, 2) takes the name (index < n_names) with
    the largest sum of exp(-d^2 / (2 sigma^2)) over candidate points (M, 2) carrying that name;
    if every weight underflows, the name of the nearest candidate; -1 without candidates."""
    q = np.asarray(query_xy, dtype=np.float64).reshape(-1, 2)
    cxy = np.asarray(cand_xy, dtype=np.float64).reshape(-1, 2)
    cn = np.asarray(cand_name, dtype=int).reshape(-1)
    keep = np.isfinite(cxy).all(axis=1)
    cxy, cn = cxy[keep], cn[keep]
    if len(cxy) == 0:
        return np.full(len(q), -1, dtype=int)
    d2 = ((q[:, None, :] - cxy[None, :, :]) ** 2).sum(axis=2)                # (V, M)
    w = np.exp(-d2 / (2.0 * sigma ** 2))
    votes = np.zeros((len(q), n_names))
    for j in range(n_names):
        votes[:, j] = w[:, cn == j].sum(axis=1)
    out = np.argmax(votes, axis=1)
    none = votes.max(axis=1) <= 0
    out[none] = cn[np.argmin(d2[none], axis=1)] if none.any() else out[none]
    return out


@dataclass
class QueryResult:
    """One query under one method (P names).

    xy: (P, 2) predicted location (NaN: nothing transferred); score: (P,);
    gt: (P, 3) ground truth x, y, visible; bbox: query box; correct: (P,) bool, whether the
    prediction is within alpha (ignoring absence); class_pred: (P,) name index voted for each
    visible ground-truth keypoint (-1 elsewhere)."""

    index: int
    xy: np.ndarray
    score: np.ndarray
    gt: np.ndarray
    bbox: tuple
    correct: np.ndarray
    class_pred: np.ndarray
    neighbours: list = field(default_factory=list)


def evaluate_query(nt: NeighbourTransfer, gt: np.ndarray, bbox, alpha: float, use_prior: bool,
                   sigma_min: float, vote_sigma: float, index: int = -1,
                   neighbours=()) -> QueryResult:
    """Aggregate one query's neighbour transfers and score them (see module doc)."""
    prior = prior_weights(nt, bbox, sigma_min) if use_prior else None
    xy, score = aggregate(nt, prior)
    gt = np.asarray(gt, dtype=np.float64)
    vis = gt[:, 2] > 0
    correct = correct_keypoints(xy, np.nan_to_num(gt[:, :2]), np.ones(len(gt), bool), bbox, alpha)
    P = len(gt)
    names = np.broadcast_to(np.arange(P), nt.ok.shape)
    class_pred = np.full(P, -1, dtype=int)
    if vis.any():
        class_pred[vis] = vote_names(gt[vis, :2], nt.xy[nt.ok], names[nt.ok], P,
                                     vote_sigma * box_size(bbox))
    return QueryResult(index, xy, score, gt, tuple(bbox), correct, class_pred, list(neighbours))


def localisation_counts(results: list[QueryResult], threshold: float) -> tuple[int, int]:
    """(correct, visible) over queries: a visible name counts when predicted present
    (score >= threshold, finite location) and within alpha."""
    c = t = 0
    for r in results:
        vis = r.gt[:, 2] > 0
        present = np.isfinite(r.score) & (r.score >= threshold) & np.isfinite(r.xy).all(axis=1)
        c += int((vis & present & r.correct).sum())
        t += int(vis.sum())
    return c, t


def classification_counts(results: list[QueryResult]) -> tuple[int, int]:
    """(correct, total) name votes over the visible ground-truth keypoints of the queries."""
    c = t = 0
    for r in results:
        vis = r.gt[:, 2] > 0
        c += int((r.class_pred[vis] == np.flatnonzero(vis)).sum())
        t += int(vis.sum())
    return c, t


def threshold_from_results(results: list[QueryResult]) -> float:
    """The absence threshold chosen on (train-split) query results."""
    if not results:
        return -np.inf
    s = np.concatenate([r.score for r in results])
    c = np.concatenate([r.correct & np.isfinite(r.xy).all(axis=1) for r in results])
    v = np.concatenate([r.gt[:, 2] > 0 for r in results])
    return choose_absence_threshold(s, c, v)


# ---------------------------------------------------------------------- the per-category driver
def threshold_queries(train: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """The train-split queries used to choose the absence threshold: all, or ``n`` of them
    drawn with ``seed`` (sorted)."""
    train = np.asarray(train, dtype=int)
    if n is None or n >= len(train):
        return train
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(train, size=n, replace=False))


def keypoint_queries(cat, k: int, n_threshold_queries: int | None = None, seed: int = 0):
    """The queries of :func:`run_keypoint_evaluation` and their retrieved neighbours:
    (threshold queries (train split), their neighbours, test queries, their neighbours); each
    query's correspondences are neighbour -> query. None when the split has too few images."""
    from .retrieval import retrieve

    train = cat.split_indices("train")
    test = cat.split_indices("test")
    if len(train) < 2 or len(test) == 0:
        return None
    g = np.asarray(cat.global_desc)
    thr_q = threshold_queries(train, n_threshold_queries, seed)
    return thr_q, retrieve(g, thr_q, train, k), test, retrieve(g, test, train, k)


def keypoint_requests(cat, methods, k: int, n_threshold_queries: int | None = None, seed: int = 0):
    """Every correspondence request :func:`run_keypoint_evaluation` makes, in order: (method,
    neighbour, query), one method per group of methods sharing correspondences."""
    q = keypoint_queries(cat, k, n_threshold_queries, seed)
    if q is None:
        return []
    thr_q, nb_thr, test, nb_test = q
    bases: dict = {}
    for m in methods:
        bases.setdefault(m.base, m)
    return [(m, int(n), int(query)) for m in bases.values()
            for queries, nbs in ((thr_q, nb_thr), (test, nb_test)) for query, nb in zip(queries, nbs) for n in nb]


def run_keypoint_evaluation(cat, methods, k: int, alpha: float, sigma_min: float = 0.1,
                            vote_sigma: float = 0.1, n_threshold_queries: int | None = None,
                            seed: int = 0, progress=False):
    """Keypoint localisation (PCK) and classification by transfer for one category.

    cat: an :class:`~sopcorr.evaluate.category.EvalCategory`; methods: built
    :class:`~sopcorr.matchers.methods.Method` objects. Test-split queries retrieve their K
    neighbours among the train split (global descriptors of the raw feature store); the
    absence threshold is chosen per method on train-split queries.

    Returns (localisation records, classification records, predictions, localisation records
    without absence prediction): records are lists of dicts (method, category, value in %,
    correct, total[, threshold]); predictions maps a method name to a list of per-query dicts
    (index, xy (P, 2), present (P,), gt (P, 3), neighbours) for figures. Progress (queries
    whose K neighbours are matched, per group of methods sharing correspondences) goes to the
    log (:func:`sopcorr.progress.counting`).
    """
    from ..progress import counting
    from .transfer import transfer_from_neighbours

    loc, cls, preds, loc_all = [], [], {}, []
    queries = keypoint_queries(cat, k, n_threshold_queries, seed)
    if queries is None:
        return loc, cls, preds, loc_all
    thr_q, nb_thr, test, nb_test = queries
    kps = {i: cat.keypoints(i) for i in range(len(cat.instances))}
    boxes = {i: cat.bbox(i) for i in range(len(cat.instances))}
    groups: dict[str, list] = {}
    for m in methods:
        groups.setdefault(m.base, []).append(m)
    n_queries = len(groups) * (len(thr_q) + len(test))
    with counting(progress, total=n_queries, desc=f"keypoints {cat.category}", unit="query",
                  logger=log) as bar:
        for base, ms in groups.items():
            def transfers(queries, nbs):
                out = []
                for q, nb in zip(queries, nbs):
                    corrs = [ms[0].correspondence(int(n), int(q)) for n in nb]
                    out.append(transfer_from_neighbours(corrs, np.stack([kps[int(n)] for n in nb]),
                                                        np.array([boxes[int(n)] for n in nb])))
                    bar.update(1)
                return out

            nt_thr = transfers(thr_q, nb_thr)
            nt_test = transfers(test, nb_test)
            for m in ms:
                r_thr = [evaluate_query(nt, kps[int(q)], boxes[int(q)], alpha, m.prior, sigma_min, vote_sigma,
                                        int(q), nb) for q, nt, nb in zip(thr_q, nt_thr, nb_thr)]
                thr = threshold_from_results(r_thr)
                r_test = [evaluate_query(nt, kps[int(q)], boxes[int(q)], alpha, m.prior, sigma_min, vote_sigma,
                                         int(q), nb) for q, nt, nb in zip(test, nt_test, nb_test)]
                c, t = localisation_counts(r_test, thr)
                loc.append(dict(method=m.name, category=cat.category, value=100.0 * c / max(t, 1),
                                correct=c, total=t, threshold=thr))
                c, t = localisation_counts(r_test, -np.inf)
                loc_all.append(dict(method=m.name, category=cat.category, value=100.0 * c / max(t, 1),
                                    correct=c, total=t))
                if not m.prior:
                    c2, t2 = classification_counts(r_test)
                    cls.append(dict(method=f"{m.name}_transfer", category=cat.category,
                                    value=100.0 * c2 / max(t2, 1), correct=c2, total=t2))
                preds[m.name] = [dict(index=r.index, id=cat.instances[r.index].id,
                                      xy=np.round(r.xy, 3).tolist(),
                                      present=(np.isfinite(r.score) & (r.score >= thr)
                                               & np.isfinite(r.xy).all(axis=1)).tolist(),
                                      gt=r.gt.tolist(), neighbours=[int(n) for n in r.neighbours])
                                 for r in r_test]
    return loc, cls, preds, loc_all
