"""Snakemake script of the download rules: fetch, verify (sha256) and unpack an archive."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

from sopcorr.data.download import download_archive
from sopcorr.scriptutil import run


def main(smk):
    download_archive(smk.params.url, smk.params.dest, smk.output.marker, sha256=smk.params.sha256)


run(main, snakemake)  # noqa: F821
