"""Snakemake script of rule finetune_siamese: fine-tune on the keypoint training split."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

from sopcorr.scriptutil import limit_threads, run
from sopcorr.siamese.stage import run_training


def main(smk):
    limit_threads(smk)
    sources = list(zip(smk.input.features, smk.input.flows, smk.input.instances))
    section = {**smk.params.siamese, "device": smk.params.device, "checkpoint_every": smk.params.checkpoint_every}
    run_training(sources, section, dict(smk.params.backbone), int(smk.params.seed),
                 smk.output.model, smk.output.loss, init_checkpoint=smk.input.model,
                 min_confirmations=int(smk.params.get("cycle_min", 0)))


run(main, snakemake)  # noqa: F821
