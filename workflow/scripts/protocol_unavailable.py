"""Snakemake script of rule protocol_unavailable: one line says why the table is not written."""
from sopcorr.errors import SopcorrError
from sopcorr.scriptutil import run


def main(smk):
    raise SopcorrError(smk.params.message)


run(main, snakemake)  # noqa: F821
