"""Snakemake script of rule prepare_category: one category's instances.json."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

from sopcorr.data.prepare import prepare_category, source_dataset
from sopcorr.scriptutil import run


def main(smk):
    cat = smk.wildcards.category
    ds = source_dataset(smk.params.dataset, smk.input.get("dataset") if hasattr(smk.input, "get") else None,
                        categories=[cat])
    prepare_category(ds, cat, smk.output.instances)


run(main, snakemake)  # noqa: F821
