"""Gather per-category records into one table (CSV, Markdown, LaTeX)."""
from sopcorr.evaluate.tables import build_table
from sopcorr.scriptutil import run


def main(smk):
    build_table(smk.params.table, list(smk.input), smk.params.categories, smk.config,
                smk.output.csv, smk.output.md, smk.output.tex, getattr(smk.output, "html", None))


run(main, snakemake)  # noqa: F821
