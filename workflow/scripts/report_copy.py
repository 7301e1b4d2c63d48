"""Copy a figure written by another stage into the report's figures (or draw a placeholder
when that stage did not write it)."""
import shutil
from pathlib import Path

from sopcorr.io import atomic_path
from sopcorr.scriptutil import run


def main(smk):
    with atomic_path(smk.output[0]) as tmp:
        shutil.copyfile(Path(smk.input[0]), tmp)


run(main, snakemake)  # noqa: F821
