"""Snakemake script of rule manifold: the paper's loop on one category's feature store."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

import numpy as np

from sopcorr.data.generic import load_dataset
from sopcorr.data.groundtruth import read_parts
from sopcorr.features.store import FeatureStore
from sopcorr.manifold.metrics import gt_parts_on_grid
from sopcorr.manifold.refine import ManifoldOutputs, ManifoldParams, run_manifold, write_outputs
from sopcorr.scriptutil import limit_threads, run


def main(smk):
    limit_threads(smk, torch=False)
    category = smk.wildcards.category
    store = FeatureStore.open(smk.input.features)
    params = ManifoldParams.from_config(smk.params.manifold, seed=int(smk.params.seed), category=category)
    ds = load_dataset(smk.input.instances, check_images=False)
    by_id = ds.by_id()
    gt = None
    if all(by_id.get(i) is not None and by_id[i].parts for i in store.ids):
        maps = [read_parts(ds.path(by_id[i].parts)) for i in store.ids]
        gt = gt_parts_on_grid(maps, [store.grid(k) for k in range(len(store))])
    result = run_manifold(store.features, store.valid, params, gt_parts=gt, state_dir=smk.params.state_dir,
                          desc=f"manifold {category}")
    write_outputs(result, ManifoldOutputs.from_mapping(smk.output), store.features, store.valid, store.attrs,
                  params, title=category)


run(main, snakemake)  # noqa: F821
