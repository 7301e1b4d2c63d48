"""Keypoint localisation (Table 2) and classification by transfer (Table 1 (b)) for one category."""
import logging

from sopcorr.evaluate.category import EvalCategory
from sopcorr.evaluate.keypoints import run_keypoint_evaluation
from sopcorr.evaluate.tables import write_records
from sopcorr.matchers.methods import MatcherSettings, build_methods
from sopcorr.scriptutil import evaluation_inputs, limit_threads, run


def main(smk):
    limit_threads(smk)
    p = smk.params
    frames, checkpoints = evaluation_inputs(smk)
    cat = EvalCategory.from_frames(frames["raw"])
    methods = build_methods(p.methods, MatcherSettings.from_params(p.matchers, p.devices), frames, checkpoints)
    logging.getLogger("sopcorr").info("keypoint evaluation of %s with %s", cat.category, [m.name for m in methods])
    loc, cls, preds, loc_all = run_keypoint_evaluation(
        cat, methods, k=p.k_neighbors, alpha=p.alpha, sigma_min=p.prior_sigma_min,
        vote_sigma=p.vote_sigma, n_threshold_queries=p.threshold_queries, seed=p.seed, progress=True)
    write_records(smk.output[0], {"localisation": loc, "localisation_no_absence": loc_all,
                                   "classification": cls, "predictions": preds})


run(main, snakemake)  # noqa: F821
