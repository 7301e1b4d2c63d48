"""Every evaluation protocol of one category (sopcorr.evaluate.protocols): Tables 1 and 2,
pair-wise PCK, the dense table and the category's figures, in one process."""
from sopcorr.jobserver import delegate

delegate(snakemake)  # noqa: F821  (in the run's job server when one is up: docs/PERFORMANCE.md)

from sopcorr.evaluate.protocols import CategoryEvaluation, CategoryOutputs, evaluate_category
from sopcorr.matchers.methods import MatcherSettings
from sopcorr.scriptutil import evaluation_inputs, limit_threads, run


def main(smk):
    limit_threads(smk)
    p = smk.params
    frames, checkpoints = evaluation_inputs(smk)
    outputs = CategoryOutputs.from_rule_outputs(smk.output)
    evaluation = CategoryEvaluation.from_params(p.protocols, p.seed, p.devices["backbone"])
    evaluate_category(frames, checkpoints, MatcherSettings.from_params(p.matchers, p.devices), evaluation, outputs)


run(main, snakemake)  # noqa: F821
