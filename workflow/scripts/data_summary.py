"""Snakemake script of rule data_summary: per-category counts of the prepared data."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

from sopcorr.data.prepare import summarize
from sopcorr.io import atomic_path
from sopcorr.scriptutil import run


def main(smk):
    df = summarize(list(smk.input.instances))
    with atomic_path(smk.output.csv) as tmp:
        df.to_csv(tmp, index=False)


run(main, snakemake)  # noqa: F821
