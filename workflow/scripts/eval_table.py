"""Gather per-category records into one table (CSV, Markdown, LaTeX, HTML)."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

from sopcorr.evaluate.tables import build_table
from sopcorr.scriptutil import run


def main(smk):
    p = smk.params
    build_table(p.table, list(smk.input), p.categories, dict(p.notes), bool(p.paper_rows),
                smk.output.csv, smk.output.md, smk.output.tex, smk.output.html)


run(main, snakemake)  # noqa: F821
