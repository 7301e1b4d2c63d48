"""Snakemake script of rule report_description: the report's first screen from the run's tables."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

from sopcorr.io import atomic_path
from sopcorr.report_summary import SummaryParams, read_run_table, render_summary
from sopcorr.scriptutil import run


def main(smk):
    params = SummaryParams.from_params(smk.params.summary)
    tables = [read_run_table(p) for p in smk.input.tables]
    text = render_summary(tables, list(smk.input.figures), params, viewer=smk.params.viewer)
    with atomic_path(smk.output.description) as tmp:
        tmp.write_text(text)


run(main, snakemake)  # noqa: F821
