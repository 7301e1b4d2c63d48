"""Pair-wise PCK over the dataset's pairs for one category."""
from pathlib import Path

from sopcorr.evaluate.methods import CategoryContext, available_methods
from sopcorr.evaluate.pairs import run_pair_evaluation
from sopcorr.evaluate.tables import write_records
from sopcorr.scriptutil import run


def run_dir(smk):
    """results/<run>/ from the input results/<run>/data/<category>/instances.json."""
    return Path(smk.input.instances).parents[2]


def main(smk):
    import torch

    torch.set_num_threads(max(1, int(smk.threads)))
    cfg = smk.config
    ev = cfg["evaluate"]
    ctx = CategoryContext(smk.wildcards.category, run_dir(smk), cfg)
    methods = available_methods(ev["pair_methods"], ctx)
    recs = run_pair_evaluation(ctx, methods, ev["pair_alphas"], ev["max_eval_pairs"], cfg["seed"])
    write_records(smk.output[0], {"pairs": recs})


run(main, snakemake)  # noqa: F821
