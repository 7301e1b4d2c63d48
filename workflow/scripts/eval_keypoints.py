"""Keypoint localisation (Table 2) and classification by transfer (Table 1 (b)) for one category."""

import logging

from sopcorr.evaluate.methods import available_methods
from sopcorr.evaluate.keypoints import run_keypoint_evaluation
from sopcorr.evaluate.tables import write_records
from sopcorr.scriptutil import category_context, run



def main(smk):
    cfg = smk.config
    ev = cfg["evaluate"]
    ctx = category_context(smk)
    methods = available_methods(ev["localisation_methods"], ctx)
    logging.getLogger("sopcorr").info("keypoint evaluation of %s with %s", ctx.category, [m.name for m in methods])
    loc, cls, preds, loc_all = run_keypoint_evaluation(
        ctx, methods, k=ev["k_neighbors"], alpha=ev["alpha"], sigma_min=ev["prior_sigma_min"],
        vote_sigma=ev["vote_sigma"], n_threshold_queries=ev["threshold_queries"], seed=cfg["seed"])
    write_records(smk.output[0], {"localisation": loc, "localisation_no_absence": loc_all,
                                   "classification": cls, "predictions": preds})


run(main, snakemake)  # noqa: F821
