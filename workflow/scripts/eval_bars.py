"""Bar chart of a result table (PCK per category per method)."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

import pandas as pd

from sopcorr.scriptutil import run
from sopcorr.viz.bars import draw_table_bars


def main(smk):
    df = pd.read_csv(smk.input[0])
    key = smk.params.get("key")
    if key and key in df.columns:
        df = df[df[key].astype(str) == str(smk.params.key_value)].drop(columns=[key])
    draw_table_bars(df, smk.output[0], ylabel=smk.params.ylabel, title=smk.params.title)


run(main, snakemake)  # noqa: F821
