"""Snakemake script of rule pseudo_flow_round: round r's pseudo-ground-truth flow store of one
category, made by round r - 1's network on round 1's pairs (with the cycle confirmation counts
through round 1's hubs when params.cycle is given: flow.cycle_images > 0)."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

import logging

import torch

from sopcorr.errors import DatasetError
from sopcorr.flow.cycle import CycleParams
from sopcorr.flow.pseudo import FlowStore, pseudo_flows, write_flow_store
from sopcorr.matchers.base import FrameSource
from sopcorr.matchers.methods import MatcherSettings
from sopcorr.matchers.round_teacher import build_round_teacher
from sopcorr.scriptutil import run

log = logging.getLogger("sopcorr.pseudo_flow_round")


def main(smk):
    torch.set_num_threads(max(1, int(smk.threads)))
    category, teacher = smk.wildcards.category, dict(smk.params.teacher)
    settings = MatcherSettings.from_params(teacher["matchers"], smk.params.devices)
    matcher = build_round_teacher(teacher["method"], settings, smk.input.model, float(teacher["fb_tolerance"]))
    frames = FrameSource(smk.input.instances, smk.input.features, embedding=smk.input.embedded, category=category)
    first = FlowStore.open(smk.input.pairs)
    pairs = [(int(i), int(j)) for i, j in first.pairs]
    log.info("%s round %s: %s of %s on %d pairs", category, smk.wildcards.round, teacher["method"],
             smk.input.model, len(pairs))
    cycle = CycleParams.from_config(dict(smk.params.get("cycle") or {}))
    hubs = None
    if cycle.images > 0:
        hubs = first.cycle_hubs
        if first.confirmations is None:
            raise DatasetError(f"{smk.input.pairs}: no cycle hubs in round 1's flow store (flow.cycle_images: "
                               f"{cycle.images}); rerun rule pseudo_flow")
    stats: dict = {}
    out = pseudo_flows(matcher, frames, pairs, progress=True, hubs=hubs, cycle_tolerance=cycle.tolerance,
                       stats=stats)
    frac = float(out["valid"].mean()) if len(pairs) else 0.0
    log.info("%s: %.1f %% of cells valid", category, 100 * frac)
    emb = frames.embedding
    cyc = {}
    if hubs is not None:
        nv = int(out["valid"].sum())
        log.info("%s: %.1f %% of valid cells confirmed through %d hub(s); %d matcher calls (%d legs)", category,
                 100 * float((out["valid"] & (out["confirmations"] > 0)).sum() / max(nv, 1)), len(hubs),
                 stats["matcher_calls"], stats["leg_calls"])
        cyc = dict(confirmations=out["confirmations"], hubs=list(hubs), cycle_tolerance=cycle.tolerance,
                   cycle_images=cycle.images)
    write_flow_store(smk.output.store, pairs, out["target_xy"], out["valid"], out["score"],
                     emb.ids, emb.image_hw, emb.input_size, emb.stride,
                     attrs={"round_teacher": teacher, "round": int(smk.wildcards.round),
                            "network": str(smk.input.model), "pairs_from": str(smk.input.pairs),
                            "category": category, "valid_fraction": frac}, **cyc)


run(main, snakemake)  # noqa: F821
