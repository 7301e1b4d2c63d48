"""Per-category figures: dense correspondence colour maps and keypoint predictions."""
from sopcorr.scriptutil import category_context, run
from sopcorr.viz.correspondence import correspondence_figure
from sopcorr.viz.keypoints import keypoint_figure


def main(smk):
    ctx = category_context(smk)
    correspondence_figure(ctx, smk.output.correspondence)
    keypoint_figure(ctx, smk.input.keypoints, smk.output.keypoints)


run(main, snakemake)  # noqa: F821
