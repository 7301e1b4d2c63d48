"""Snakemake script of rule extract_features: one category's feature store."""
import torch

from sopcorr.features.extract import extract_category
from sopcorr.scriptutil import run


def main(smk):
    torch.set_num_threads(max(1, int(smk.threads)))
    cfg = {**smk.params.backbone, "batch_size": int(smk.params.batch_size)}
    extract_category(smk.input.instances, smk.output.store, cfg, device=smk.params.device)


run(main, snakemake)  # noqa: F821
