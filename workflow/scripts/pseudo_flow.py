"""Snakemake script of rule pseudo_flow: one category's pseudo-ground-truth flow store (with the
cycle confirmation counts when params.cycle is given: flow.cycle_images > 0)."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

import logging

import torch

from sopcorr.errors import DatasetError
from sopcorr.flow.cycle import CycleParams, cycle_hubs
from sopcorr.flow.pseudo import category_seed, pseudo_flows, sample_pairs, write_flow_store
from sopcorr.matchers.base import FrameSource
from sopcorr.matchers.pseudo import PseudoGTParams, build_pseudo_gt
from sopcorr.scriptutil import run

log = logging.getLogger("sopcorr.pseudo_flow")


def main(smk):
    torch.set_num_threads(max(1, int(smk.threads)))
    category = smk.wildcards.category
    params = PseudoGTParams.from_config(smk.params.pseudo_gt, device=smk.params.devices["flow"])
    frames = FrameSource(smk.input.instances, smk.input.features, embedding=smk.input.embedded,
                         category=category)
    n = len(frames)
    if n < 2:
        raise DatasetError(f"{smk.input.instances}: category '{category}' has {n} image(s); "
                           f"pseudo flows need at least 2")
    pool = None
    if smk.params.pairs_split == "train":
        pool = [k for k, inst in enumerate(frames.instances) if inst.split == "train"]
        if len(pool) < 2:
            raise DatasetError(f"{smk.input.instances}: fewer than 2 train images in '{category}' "
                               f"(flow.pairs_split: train)")
    seed = category_seed(int(smk.params.seed), category)
    pairs = sample_pairs(n, int(smk.params.pairs_per_category), seed, ids=pool)
    cycle = CycleParams.from_config(dict(smk.params.get("cycle") or {}))
    hubs = cycle_hubs(n, cycle.images, seed, ids=pool) if cycle.images > 0 else None
    emb = frames.embedding
    log.info("%s: %d pairs over %d images, grid %s, %d channels; %s", category, len(pairs),
             n if pool is None else len(pool), emb.shape[1:3], emb.shape[3], params)
    stats: dict = {}
    out = pseudo_flows(build_pseudo_gt(params), frames, pairs, progress=True, hubs=hubs,
                       cycle_tolerance=cycle.tolerance, stats=stats)
    frac = float(out["valid"].mean()) if len(pairs) else 0.0
    log.info("%s: %.1f %% of cells valid, mean score of valid cells %.3f", category, 100 * frac,
             float(out["score"][out["valid"]].mean()) if out["valid"].any() else float("nan"))
    cyc = {}
    if hubs is not None:
        nv = int(out["valid"].sum())
        confirmed = float((out["valid"] & (out["confirmations"] > 0)).sum() / nv) if nv else 0.0
        log.info("%s: cycle confirmation through %d hub(s) %s (tolerance %g cells): %.1f %% of valid cells "
                 "confirmed at least once; %d matcher calls (%d pairs + %d legs, %.1f s in legs; %d inner "
                 "matches computed, %d shared)",
                 category, len(hubs), [emb.ids[h] for h in hubs], cycle.tolerance, 100 * confirmed,
                 stats["matcher_calls"], len(pairs), stats["leg_calls"], stats["leg_seconds"],
                 stats["inner_computed"], stats["inner_served"])
        cyc = dict(confirmations=out["confirmations"], hubs=hubs, cycle_tolerance=cycle.tolerance,
                   cycle_images=cycle.images)
    write_flow_store(smk.output.store, pairs, out["target_xy"], out["valid"], out["score"],
                     emb.ids, emb.image_hw, emb.input_size, emb.stride,
                     attrs={"pseudo_gt": dict(smk.params.pseudo_gt), "pairs_split": smk.params.pairs_split,
                            "variant": params.variant, "source": str(smk.input.embedded),
                            "category": category, "valid_fraction": frac}, **cyc)


run(main, snakemake)  # noqa: F821
