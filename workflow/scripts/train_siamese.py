"""Snakemake script of rule train_siamese: one network for all categories."""
import torch

from sopcorr.scriptutil import run
from sopcorr.siamese.stage import run_training


def main(smk):
    torch.set_num_threads(max(1, int(smk.threads)))
    sources = list(zip(smk.input.features, smk.input.flows, smk.input.instances))
    run_training(sources, dict(smk.params.siamese), dict(smk.params.backbone), int(smk.params.seed),
                 smk.output.model, smk.output.loss)


run(main, snakemake)  # noqa: F821
