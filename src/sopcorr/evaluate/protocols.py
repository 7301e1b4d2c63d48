"""Every evaluation protocol of one category in one pass (rule ``evaluate``): keypoint
localisation and classification by transfer (Tables 2 and 1 (b), :mod:`.keypoints`), the SVM
descriptor baselines (Table 1 (a), :mod:`.classify`), pair-wise PCK (:mod:`.pairs`), dense
metrics against synthetic ground truth (:mod:`.dense`) and the category's figures
(:mod:`sopcorr.viz.correspondence`, :mod:`sopcorr.viz.keypoints`).

The protocols share one set of frames and one matcher per method: what depends on one image
(its features, dense SIFT, consensus and learned descriptors) is computed once per job and
kept on the image's frame, whichever protocol asks first. Each protocol sees exactly the
methods and settings it is configured with, so every record equals what a job of that
protocol alone computes.

Settings are typed once here (:meth:`CategoryEvaluation.from_params`, from the rule's
``protocols`` params: docs/EVALUATION.md).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .category import EvalCategory
from .classify import DESCRIPTOR_METHODS, ConvDescriptorParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeypointProtocol:
    """Keypoint localisation (Table 2) and classification by transfer (Table 1 (b))."""

    methods: tuple[str, ...]
    k_neighbors: int
    alpha: float
    prior_sigma_min: float
    vote_sigma: float
    threshold_queries: int | None


@dataclass(frozen=True)
class ClassifyProtocol:
    """SVM descriptor baselines (Table 1 (a)); ``conv``: the conv4/conv5 rows' backbone (None
    when they are not asked for)."""

    descriptors: tuple[str, ...]
    sift_radii: tuple[int, ...]
    crop_size: int
    svm_c: float
    conv: ConvDescriptorParams | None = None

    def method_names(self) -> list[str]:
        """The matcher-backed descriptors' methods (``ours_embed``, ``ours_finetuned``)."""
        return [DESCRIPTOR_METHODS[d] for d in self.descriptors if d in DESCRIPTOR_METHODS]


@dataclass(frozen=True)
class PairProtocol:
    """Pair-wise PCK over (at most ``max_pairs`` of) the dataset's pairs."""

    methods: tuple[str, ...]
    alphas: tuple[float, ...]
    max_pairs: int | None


@dataclass(frozen=True)
class DenseProtocol:
    """Dense metrics against the synthetic ground truth, every ``stride`` px."""

    methods: tuple[str, ...]
    alphas: tuple[float, ...]
    stride: int
    max_pairs: int | None


@dataclass(frozen=True)
class FigureProtocol:
    """The dense correspondence colour maps of ``n_pairs`` pairs and the keypoint figure."""

    methods: tuple[str, ...]
    n_pairs: int


@dataclass(frozen=True)
class CategoryEvaluation:
    """The protocols one category is evaluated with (``pairs`` / ``dense`` None where the
    dataset has no pairs / no dense ground truth) and the seed of their draws."""

    keypoints: KeypointProtocol
    classify: ClassifyProtocol
    figures: FigureProtocol
    pairs: PairProtocol | None = None
    dense: DenseProtocol | None = None
    seed: int = 0

    @classmethod
    def from_params(cls, protocols: dict, seed: int, backbone_device: str = "auto") -> "CategoryEvaluation":
        """From the rule's ``protocols`` params ({'keypoints': {...}, 'classify': {...},
        'figures': {...}[, 'pairs': {...}][, 'dense': {...}]}, each the protocol's config
        keys) and the backbone's device (the conv rows' extraction; speed only)."""
        kp, cl, fig = protocols["keypoints"], protocols["classify"], protocols["figures"]
        conv = None
        if cl.get("conv"):
            c = cl["conv"]
            conv = ConvDescriptorParams(backbone=c["backbone"], layers=tuple(c["layers"]) if c.get("layers") else None,
                                        weights=c["weights"], relu=c["relu"], device=backbone_device)
        pairs = protocols.get("pairs")
        dense = protocols.get("dense")
        return cls(
            keypoints=KeypointProtocol(tuple(kp["methods"]), int(kp["k_neighbors"]), float(kp["alpha"]),
                                       float(kp["prior_sigma_min"]), float(kp["vote_sigma"]), kp["threshold_queries"]),
            classify=ClassifyProtocol(tuple(cl["descriptors"]), tuple(cl["sift_radii"]), int(cl["crop_size"]),
                                      float(cl["svm_c"]), conv),
            figures=FigureProtocol(tuple(fig["methods"]), int(fig["n_pairs"])),
            pairs=None if pairs is None else PairProtocol(tuple(pairs["methods"]), tuple(pairs["alphas"]),
                                                          pairs["max_pairs"]),
            dense=None if dense is None else DenseProtocol(tuple(dense["methods"]), tuple(dense["alphas"]),
                                                           int(dense["stride"]), dense["max_pairs"]),
            seed=int(seed),
        )

    def method_names(self) -> list[str]:
        """Every method a protocol uses, once, in a fixed order."""
        names: list[str] = []
        for group in (self.keypoints.methods, self.pairs.methods if self.pairs else (),
                      self.dense.methods if self.dense else (), self.figures.methods,
                      self.classify.method_names()):
            names += [n for n in group if n not in names]
        return names


@dataclass(frozen=True)
class CategoryOutputs:
    """Where the protocols write: per-category records (JSON) and the two figures (PNG);
    ``pairs`` / ``dense`` None where those protocols do not run."""

    keypoints: str | Path
    classify: str | Path
    correspondence_figure: str | Path
    keypoint_figure: str | Path
    pairs: str | Path | None = None
    dense: str | Path | None = None

    @classmethod
    def from_rule_outputs(cls, out) -> "CategoryOutputs":
        """From the ``evaluate`` rule's named outputs (``snakemake.output``: keypoints, classify,
        correspondence, keypoint_figure, and pairs / dense where the rule declares them)."""
        return cls(keypoints=out.keypoints, classify=out.classify, correspondence_figure=out.correspondence,
                   keypoint_figure=out.keypoint_figure, pairs=getattr(out, "pairs", None),
                   dense=getattr(out, "dense", None))


def evaluate_category(frames: dict, checkpoints: dict, settings, evaluation: CategoryEvaluation,
                      outputs: CategoryOutputs, progress: bool = True) -> None:
    """Run every protocol of ``evaluation`` on one category and write ``outputs``.

    frames: :func:`sopcorr.matchers.base.frame_sources` of the job's stores; checkpoints:
    {name: path} of the networks; settings: :class:`sopcorr.matchers.methods.MatcherSettings`
    of the methods' matchers."""
    from ..matchers.methods import build_methods
    from ..viz.correspondence import correspondence_figure
    from ..viz.keypoints import keypoint_figure
    from .classify import run_svm_baselines
    from .dense import run_dense_evaluation
    from .keypoints import run_keypoint_evaluation
    from .pairs import run_pair_evaluation
    from .tables import write_records

    ev, seed = evaluation, evaluation.seed
    cat = EvalCategory.from_frames(frames["raw"])
    names = ev.method_names()
    built = dict(zip(names, build_methods(names, settings, frames, checkpoints)))
    chosen = lambda group: [built[n] for n in group]  # noqa: E731
    log.info("evaluation of %s with %s", cat.category, names)
    shared = share_job_correspondences(cat, built, ev, outputs)

    kp = ev.keypoints
    loc, cls, preds, loc_all = run_keypoint_evaluation(
        cat, chosen(kp.methods), k=kp.k_neighbors, alpha=kp.alpha, sigma_min=kp.prior_sigma_min,
        vote_sigma=kp.vote_sigma, n_threshold_queries=kp.threshold_queries, seed=seed, progress=progress)
    write_records(outputs.keypoints, {"localisation": loc, "localisation_no_absence": loc_all,
                                      "classification": cls, "predictions": preds})

    cl = ev.classify
    svm_names = []
    for d in cl.descriptors:
        svm_names += [f"sift_r{r}" for r in cl.sift_radii] if d == "sift" else [d]
    matchers = {d: built[DESCRIPTOR_METHODS[d]] for d in cl.descriptors if d in DESCRIPTOR_METHODS}
    recs = run_svm_baselines(cat, svm_names, crop_size=cl.crop_size, conv=cl.conv, matchers=matchers,
                             C=cl.svm_c, seed=seed, progress=progress)
    write_records(outputs.classify, {"classification": recs})

    if ev.pairs is not None and outputs.pairs is not None:
        pp = ev.pairs
        recs = run_pair_evaluation(cat, chosen(pp.methods), pp.alphas, pp.max_pairs, seed, progress=progress)
        write_records(outputs.pairs, {"pairs": recs})
    if ev.dense is not None and outputs.dense is not None:
        dp = ev.dense
        recs = run_dense_evaluation(cat, chosen(dp.methods), dp.alphas, dp.stride, dp.max_pairs, seed,
                                    progress=progress)
        write_records(outputs.dense, {"dense": recs})

    fig = ev.figures
    correspondence_figure(cat, chosen(fig.methods), outputs.correspondence_figure, n_pairs=fig.n_pairs,
                          progress=progress)
    keypoint_figure(cat, outputs.keypoints, outputs.keypoint_figure, methods=list(fig.methods))
    log.info("correspondences of %s: %d computed, %d asked again and served from the job's store "
             "(at most %d held at once)", cat.category, shared.computed, shared.served, shared.peak)


def planned_requests(cat, built: dict, ev: CategoryEvaluation, outputs: CategoryOutputs) -> list[tuple]:
    """Every correspondence request the protocols of ``ev`` make when they write ``outputs``,
    as (method, source, target) instance indices: keypoints (neighbour -> query, one method per
    group sharing correspondences), pairs, dense, figures (B -> A)."""
    from ..viz.correspondence import figure_pairs
    from .keypoints import keypoint_requests

    kp = ev.keypoints
    out = keypoint_requests(cat, [built[n] for n in kp.methods], kp.k_neighbors, kp.threshold_queries, ev.seed)
    for proto, path in ((ev.pairs, outputs.pairs), (ev.dense, outputs.dense)):
        if proto is not None and path is not None:
            pairs = cat.pairs(proto.max_pairs, ev.seed)
            out += [(built[n], s, t) for n in proto.methods for s, t in pairs]
    out += [(built[n], b, a) for a, b in figure_pairs(cat, ev.figures.n_pairs) for n in ev.figures.methods]
    return out


def share_job_correspondences(cat, built: dict, ev: CategoryEvaluation, outputs: CategoryOutputs):
    """Route every method's correspondences through one
    :class:`~sopcorr.matchers.base.SharedCorrespondences` (in place: each method's matcher is
    wrapped once), told every request the protocols will make (:func:`planned_requests`): a
    (matcher, source, target) correspondence that more than one request needs (the dense
    protocol's pairs are the pair protocol's; the pseudo ground truth's forward match is
    ``ours_geometric``'s) is computed once and held until its last use. Returns it."""
    from ..matchers.base import SharedCorrespondences, share_correspondences

    shared = SharedCorrespondences()
    wrapped: dict = {}
    for m in built.values():
        if id(m.matcher) not in wrapped:
            wrapped[id(m.matcher)] = (m.matcher, share_correspondences(m.matcher, shared))
        m.matcher = wrapped[id(m.matcher)][1]
    for m, s, t in planned_requests(cat, built, ev, outputs):
        shared.expect(m.matcher, m.frames[int(s)], m.frames[int(t)])
    return shared
