"""Snakemake script of rule viewer: the run's interactive correspondence viewer."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

from sopcorr.scriptutil import limit_threads, run
from sopcorr.viewer.build import ViewerSettings, write_viewer


def main(smk):
    limit_threads(smk)
    p = smk.params
    inputs = {k: getattr(smk.input, k) for k in smk.input.keys()}
    write_viewer(smk.output[0], p.run, p.categories, inputs, ViewerSettings.from_params(p.viewer),
                 p.matchers, p.devices, progress=True)


run(main, snakemake)  # noqa: F821
