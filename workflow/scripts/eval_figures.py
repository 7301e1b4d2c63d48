"""Per-category figures: dense correspondence colour maps and keypoint predictions."""
from pathlib import Path

from sopcorr.evaluate.methods import CategoryContext
from sopcorr.scriptutil import run


def run_dir(smk):
    """results/<run>/ from the input results/<run>/data/<category>/instances.json."""
    return Path(smk.input.instances).parents[2]
from sopcorr.viz.correspondence import correspondence_figure
from sopcorr.viz.keypoints import keypoint_figure


def main(smk):
    import torch

    torch.set_num_threads(max(1, int(smk.threads)))
    cfg = smk.config
    ctx = CategoryContext(smk.wildcards.category, run_dir(smk), cfg)
    correspondence_figure(ctx, smk.output.correspondence)
    keypoint_figure(ctx, smk.input.keypoints, smk.output.keypoints)


run(main, snakemake)  # noqa: F821
