"""Keypoint classification with descriptor baselines and linear SVMs (Table 1 (a)) for one category."""

from sopcorr.evaluate.classify import run_svm_baselines
from sopcorr.evaluate.tables import write_records
from sopcorr.scriptutil import category_context, run



def main(smk):
    cfg = smk.config
    ev = cfg["evaluate"]
    ctx = category_context(smk)
    names = []
    for d in ev["classification_descriptors"]:
        names += [f"sift_r{r}" for r in ev["sift_radii"]] if d == "sift" else [d]
    recs = run_svm_baselines(ctx, names, crop_size=ev["crop_size"], layers=ev["conv_layers"],
                             C=ev["svm_c"], seed=cfg["seed"], device=cfg["backbone"]["device"])
    write_records(smk.output[0], {"classification": recs})


run(main, snakemake)  # noqa: F821
