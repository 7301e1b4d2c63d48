"""Snakemake script of rule extract_features: one category's feature store."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

from sopcorr.features.extract import extract_category
from sopcorr.scriptutil import limit_threads, run


def main(smk):
    limit_threads(smk)
    cfg = {**smk.params.backbone, "batch_size": int(smk.params.batch_size)}
    extract_category(smk.input.instances, smk.output.store, cfg, device=smk.params.device)


run(main, snakemake)  # noqa: F821
