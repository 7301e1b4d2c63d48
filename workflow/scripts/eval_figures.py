"""Per-category figures: dense correspondence colour maps and keypoint predictions."""
from sopcorr.evaluate.methods import CategoryContext
from sopcorr.scriptutil import run
from sopcorr.viz.correspondence import correspondence_figure
from sopcorr.viz.keypoints import keypoint_figure


def main(smk):
    import torch

    torch.set_num_threads(max(1, int(smk.threads)))
    cfg = smk.config
    ctx = CategoryContext(smk.wildcards.category, smk.params.run_dir, cfg)
    correspondence_figure(ctx, smk.output.correspondence)
    keypoint_figure(ctx, smk.input.keypoints, smk.output.keypoints)


run(main, snakemake)  # noqa: F821
