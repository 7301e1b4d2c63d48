"""Snakemake script of rule generate_synthetic: the synthetic part-annotated benchmark."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

from pathlib import Path

from sopcorr.data.synthetic import generate
from sopcorr.scriptutil import job_threads, run


def main(smk):
    s = smk.params.synthetic
    generate(Path(smk.output.dataset).parent, categories=list(s["categories"]),
             images_per_category=int(s["images_per_category"]), image_size=int(s["image_size"]),
             pairs_per_category=int(s["pairs_per_category"]), seed=int(smk.params.seed),
             occluders=int(s["occluders"]), train_fraction=float(smk.params.train_fraction),
             image_format=s.get("image_format", "jpg"), progress=True,
             workers=job_threads(smk))


run(main, snakemake)  # noqa: F821
