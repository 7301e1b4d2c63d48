"""Snakemake script of rule embed_inductive: every image embedded with a manifold fitted elsewhere."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

import logging

from sopcorr.manifold.refine import embed_new_images
from sopcorr.scriptutil import run


def main(smk):
    n = embed_new_images(smk.input.embedding, smk.input.features, smk.output.store)
    logging.getLogger("sopcorr").info("embedded %d images of %s with %s", n, smk.input.features, smk.input.embedding)


run(main, snakemake)  # noqa: F821
