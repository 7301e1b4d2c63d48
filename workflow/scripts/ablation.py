"""Snakemake script of rule ablation_category."""
from sopcorr.evaluate.ablation import run_ablation
from sopcorr.evaluate.tables import write_records
from sopcorr.scriptutil import run


def main(smk):
    import torch

    torch.set_num_threads(max(1, int(smk.threads)))
    cfg = smk.config
    recs = run_ablation(smk.wildcards.category, smk.params.run_dir, cfg,
                        layer_sets=cfg["evaluate"]["ablation_layer_sets"])
    write_records(smk.output[0], {"ablation": recs})


run(main, snakemake)  # noqa: F821
