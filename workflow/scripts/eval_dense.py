"""Dense end-point error and PCK against the synthetic ground truth for one category."""

from sopcorr.evaluate.dense import run_dense_evaluation
from sopcorr.evaluate.methods import available_methods
from sopcorr.evaluate.tables import write_records
from sopcorr.scriptutil import category_context, run



def main(smk):
    cfg = smk.config
    ev = cfg["evaluate"]
    ctx = category_context(smk)
    methods = available_methods(ev["dense_methods"], ctx)
    recs = run_dense_evaluation(ctx, methods, ev["dense_alphas"], ev["dense_stride"],
                                ev["max_eval_pairs"], cfg["seed"])
    write_records(smk.output[0], {"dense": recs})


run(main, snakemake)  # noqa: F821
