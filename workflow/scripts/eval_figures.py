"""Per-category figures: dense correspondence colour maps and keypoint predictions."""
from sopcorr.evaluate.category import EvalCategory
from sopcorr.matchers.methods import MatcherSettings, build_methods
from sopcorr.scriptutil import evaluation_inputs, limit_threads, run
from sopcorr.viz.correspondence import correspondence_figure
from sopcorr.viz.keypoints import keypoint_figure


def main(smk):
    limit_threads(smk)
    p = smk.params
    frames, checkpoints = evaluation_inputs(smk)
    cat = EvalCategory.from_frames(frames["raw"])
    methods = build_methods(p.methods, MatcherSettings.from_params(p.matchers, p.devices), frames, checkpoints)
    correspondence_figure(cat, methods, smk.output.correspondence, n_pairs=p.n_pairs, progress=True)
    keypoint_figure(cat, smk.input.keypoints, smk.output.keypoints, methods=p.methods)


run(main, snakemake)  # noqa: F821
