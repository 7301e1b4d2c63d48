"""Snakemake script of rule protocol_unavailable: one line says why the table is not written."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

from sopcorr.errors import SopcorrError
from sopcorr.scriptutil import run


def main(smk):
    raise SopcorrError(smk.params.message)


run(main, snakemake)  # noqa: F821
