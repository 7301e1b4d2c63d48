"""Snakemake script of rule contact_sheet: a category's images with keypoints drawn and named."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

from sopcorr.data.generic import load_dataset
from sopcorr.scriptutil import run
from sopcorr.viz.contact import contact_sheet


def main(smk):
    ds = load_dataset(smk.input.instances, check_images=False)
    contact_sheet(ds, smk.wildcards.category, smk.output.png, max_images=int(smk.params.max_images))


run(main, snakemake)  # noqa: F821
