"""Snakemake script of rule ablation: the table and its figure."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

from sopcorr.evaluate.ablation import ablation_figure, ablation_table
from sopcorr.evaluate.tables import read_records, to_csv, to_markdown
from sopcorr.io import write_text
from sopcorr.scriptutil import run


def main(smk):
    recs = read_records(list(smk.input), "ablation")
    table = ablation_table(recs, list(smk.params.categories))
    keys = ("stage", "metric")
    table = table.rename(columns={"variant": "method"})
    # the tables module formats a leading 'method' column; ours is the variant
    write_text(smk.output.csv, to_csv(table, 1, keys=keys).replace("method,", "variant,", 1))
    write_text(smk.output.md, to_markdown(table, 1, title="Ablation", keys=keys).replace("| method |", "| variant |", 1))
    table = table.rename(columns={"method": "variant"})
    ablation_figure(table, smk.output.figure)


run(main, snakemake)  # noqa: F821
