"""Snakemake script of rule extract_features: one category's feature store."""
import torch

from sopcorr.features.extract import extract_category
from sopcorr.scriptutil import run


def main(smk):
    torch.set_num_threads(max(1, int(smk.threads)))
    cfg = dict(smk.params.backbone)
    extract_category(smk.input.instances, smk.output.store, cfg, device=cfg.get("device", "auto"),
                     seed=int(smk.params.seed))


run(main, snakemake)  # noqa: F821
