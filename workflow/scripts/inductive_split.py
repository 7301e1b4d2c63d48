"""Snakemake script of rule inductive_split: one category's fit half and evaluation set."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

import logging

from sopcorr.evaluate.generalisation import write_inductive_split
from sopcorr.scriptutil import run


def main(smk):
    o = smk.output
    split = write_inductive_split(smk.input.instances, smk.input.features, int(smk.params.seed),
                                  o.instances, o.features, o.evaluation)
    logging.getLogger("sopcorr").info("%s: %d images fitted on, %d held out", split.category, len(split.fit),
                                      len(split.held_out))


run(main, snakemake)  # noqa: F821
