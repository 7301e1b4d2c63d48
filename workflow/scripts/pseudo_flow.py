"""Snakemake script of rule pseudo_flow: one category's pseudo-ground-truth flow store."""
import logging

import torch

from sopcorr.data.generic import load_dataset
from sopcorr.errors import DatasetError
from sopcorr.features.store import FeatureStore
from sopcorr.flow.geometric import geometric_pseudo_flows
from sopcorr.flow.pseudo import category_seed, pseudo_flows, sample_pairs, write_flow_store
from sopcorr.flow.siftflow import params_from_config
from sopcorr.scriptutil import run

log = logging.getLogger("sopcorr.pseudo_flow")


def main(smk):
    torch.set_num_threads(max(1, int(smk.threads)))
    cfg = dict(smk.params.flow)
    category = smk.wildcards.category
    ds = load_dataset(smk.input.instances, check_images=False,
                      train_fraction=float(smk.params.train_fraction))
    store = FeatureStore.open(smk.input.embedded)
    ids = [inst.id for inst in sorted(ds.instances, key=lambda i: i.id)]
    if store.ids != ids:
        raise DatasetError(f"{smk.input.embedded}: image_ids do not match the instances of "
                           f"{smk.input.instances} ({len(store.ids)} vs {len(ids)} images)")
    if len(ids) < 2:
        raise DatasetError(f"{smk.input.instances}: category '{category}' has {len(ids)} image(s); "
                           f"pseudo flows need at least 2")
    pool = None
    if cfg["pairs_split"] == "train":
        split = {inst.id: inst.split for inst in ds.instances}
        pool = [k for k, i in enumerate(ids) if split[i] == "train"]
        if len(pool) < 2:
            raise DatasetError(f"{smk.input.instances}: fewer than 2 train images in '{category}' "
                               f"(flow.pairs_split: train)")
    pairs = sample_pairs(len(ids), int(cfg["pairs_per_category"]),
                         category_seed(int(smk.params.seed), category), ids=pool)
    log.info("%s: %d pairs over %d images, grid %s, %d channels", category, len(pairs),
             len(ids) if pool is None else len(pool), store.shape[1:3], store.shape[3])
    variant = smk.wildcards.variant
    if variant == "improved":
        # the improved variant's matcher: raw features + embedding, neighbourhood consensus,
        # piecewise RANSAC affine location prior, forward-backward consistency as validity
        raw = FeatureStore.open(smk.input.features)
        out = geometric_pseudo_flows(raw, store, pairs, cfg["geometric"], seed=int(smk.params.seed),
                                     progress=True)
    else:
        out = pseudo_flows(store, pairs, mutual=bool(cfg["mutual"]),
                           min_similarity=float(cfg["min_similarity"]), refine=cfg["refine"],
                           device=cfg["device"], progress=True, method=cfg["pseudo_method"],
                           siftflow_params=params_from_config(cfg))
    frac = float(out["valid"].mean()) if len(pairs) else 0.0
    log.info("%s: %.1f %% of cells valid, mean score of valid cells %.3f", category, 100 * frac,
             float(out["score"][out["valid"]].mean()) if out["valid"].any() else float("nan"))
    write_flow_store(smk.output.store, pairs, out["target_xy"], out["valid"], out["score"],
                     store.ids, store.image_hw, store.input_size, store.stride,
                     attrs={"mutual": bool(cfg["mutual"]), "min_similarity": float(cfg["min_similarity"]),
                            "refine": cfg["refine"], "pairs_split": cfg["pairs_split"],
                            "method": "geometric" if variant == "improved" else cfg["pseudo_method"],
                            "variant": variant,
                            "source": str(smk.input.embedded), "category": category,
                            "valid_fraction": frac})


run(main, snakemake)  # noqa: F821
