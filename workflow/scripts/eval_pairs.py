"""Pair-wise PCK over the dataset's pairs for one category."""

from sopcorr.evaluate.methods import available_methods
from sopcorr.evaluate.pairs import run_pair_evaluation
from sopcorr.evaluate.tables import write_records
from sopcorr.scriptutil import category_context, run



def main(smk):
    cfg = smk.config
    ev = cfg["evaluate"]
    ctx = category_context(smk)
    methods = available_methods(ev["pair_methods"], ctx)
    recs = run_pair_evaluation(ctx, methods, ev["pair_alphas"], ev["max_eval_pairs"], cfg["seed"])
    write_records(smk.output[0], {"pairs": recs})


run(main, snakemake)  # noqa: F821
