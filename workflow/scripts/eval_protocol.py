"""Pair-wise PCK of one category under a generalisation protocol (inductive, leave one category
out, another run's network): the protocol's methods on the dataset's pairs its instances hold."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

from sopcorr.evaluate.category import EvalCategory
from sopcorr.evaluate.pairs import run_pair_evaluation
from sopcorr.evaluate.tables import write_records
from sopcorr.matchers.methods import MatcherSettings, build_methods
from sopcorr.scriptutil import evaluation_inputs, limit_threads, run


def main(smk):
    limit_threads(smk)
    p = smk.params
    frames, checkpoints = evaluation_inputs(smk)
    cat = EvalCategory.from_frames(frames["raw"])
    methods = build_methods(p.methods, MatcherSettings.from_params(p.matchers, p.devices), frames, checkpoints)
    recs = run_pair_evaluation(cat, methods, p.alphas, p.max_pairs, p.seed, progress=True)
    write_records(smk.output[0], {"pairs": recs})


run(main, snakemake)  # noqa: F821
