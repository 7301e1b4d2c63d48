"""Snakemake script of rule train_siamese: one network for all categories."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

from sopcorr.scriptutil import limit_threads, run
from sopcorr.siamese.stage import run_training


def main(smk):
    limit_threads(smk)
    sources = list(zip(smk.input.features, smk.input.flows, smk.input.instances))
    section = {**smk.params.siamese, "device": smk.params.device, "checkpoint_every": smk.params.checkpoint_every}
    start = getattr(smk.input, "start", None) or []  # a round that continues the round before's
    start = [start] if isinstance(start, str) else list(start)
    run_training(sources, section, dict(smk.params.backbone), int(smk.params.seed),
                 smk.output.model, smk.output.loss, start_from=start[0] if start else None,
                 min_confirmations=int(smk.params.get("cycle_min", 0)),
                 interpolation=float(smk.params.get("interpolation", 1.0)))


run(main, snakemake)  # noqa: F821
