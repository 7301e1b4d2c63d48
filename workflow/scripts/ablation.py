"""Snakemake script of rule ablation_category."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

from sopcorr.evaluate.ablation import AblationVariant, BackboneParams, run_ablation
from sopcorr.evaluate.category import EvalCategory
from sopcorr.evaluate.tables import write_records
from sopcorr.matchers.methods import MatcherSettings
from sopcorr.scriptutil import evaluation_inputs, limit_threads, run


def main(smk):
    limit_threads(smk)
    p = smk.params
    variants = {}
    raw = None
    for v in p.variants:
        frames, checkpoints = evaluation_inputs(smk, suffix=f"_{v}")
        raw = raw or frames["raw"]
        variants[v] = AblationVariant(frames, checkpoints, MatcherSettings.from_params(p.matchers[v], p.devices))
    cat = EvalCategory.from_frames(raw)
    bb = dict(p.backbone)
    backbone = BackboneParams(**{**bb, "layers": tuple(bb["layers"]) if bb.get("layers") else None,
                                 "device": p.devices["backbone"]})
    recs = run_ablation(cat, raw, MatcherSettings.from_params(p.raw_matchers, p.devices), variants, backbone,
                        layer_sets=p.layer_sets, alphas=p.alphas, max_pairs=p.max_pairs, seed=p.seed,
                        dense_stride=p.dense_stride, progress=True,
                        rounds=int(p.rounds))
    write_records(smk.output[0], {"ablation": recs})


run(main, snakemake)  # noqa: F821
