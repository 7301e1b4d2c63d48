"""Keypoint classification with descriptor baselines and linear SVMs (Table 1 (a)) for one category."""
from sopcorr.evaluate.category import EvalCategory
from sopcorr.evaluate.classify import DESCRIPTOR_METHODS, ConvDescriptorParams, run_svm_baselines
from sopcorr.evaluate.tables import write_records
from sopcorr.matchers.methods import MatcherSettings, build_method
from sopcorr.scriptutil import evaluation_inputs, limit_threads, run


def main(smk):
    limit_threads(smk)
    p = smk.params
    frames, checkpoints = evaluation_inputs(smk)
    cat = EvalCategory.from_frames(frames["raw"])
    settings = MatcherSettings.from_params(p.matchers, p.devices)
    names, matchers = [], {}
    for d in p.descriptors:
        if d == "sift":
            names += [f"sift_r{r}" for r in p.sift_radii]
            continue
        names.append(d)
        if d in DESCRIPTOR_METHODS:
            matchers[d] = build_method(DESCRIPTOR_METHODS[d], settings, frames, checkpoints)
    conv = None
    if p.conv:
        layers = tuple(p.conv["layers"]) if p.conv.get("layers") else None
        conv = ConvDescriptorParams(**{**p.conv, "layers": layers, "device": p.devices["backbone"]})
    recs = run_svm_baselines(cat, names, crop_size=p.crop_size, conv=conv, matchers=matchers, C=p.svm_c,
                             seed=p.seed, progress=True)
    write_records(smk.output[0], {"classification": recs})


run(main, snakemake)  # noqa: F821
