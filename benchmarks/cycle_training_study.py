"""The collection-consistent teacher as the network's training signal (issue 23, item 2).

On a finished run, each category's pseudo ground truth is recomputed on the run's own pairs
(``flow/improved/<cat>.zarr``) with cycle confirmation through ``--hubs`` seeded hub images
(:mod:`sopcorr.flow.cycle`, the pipeline's ``flow.cycle_images``), and a network is trained with
the pipeline's training step on the teacher's valid cells that at least ``m`` hubs confirm, for
each m of ``--min`` (m = 0: every valid cell, the run's teacher). Each network is scored by
pair-wise PCK@0.1 (``ours_network``, the run's evaluation pairs) and, where the dataset has dense
ground truth, dense PCK@0.1 (``evaluate.dense_stride``).

Usage (from the repository root):

    .venv/bin/python benchmarks/cycle_training_study.py [--run results/default] [--hubs 4]
        [--min 0,1,2] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sopcorr.config import load_config  # noqa: E402
from sopcorr.evaluate.category import EvalCategory  # noqa: E402
from sopcorr.evaluate.dense import has_dense_ground_truth, run_dense_evaluation  # noqa: E402
from sopcorr.evaluate.pairs import run_pair_evaluation  # noqa: E402
from sopcorr.flow.cycle import cycle_hubs  # noqa: E402
from sopcorr.flow.pseudo import FlowStore, category_seed, pseudo_flows, write_flow_store  # noqa: E402
from sopcorr.matchers.base import frame_sources  # noqa: E402
from sopcorr.matchers.methods import MatcherSettings, build_methods  # noqa: E402
from sopcorr.matchers.pseudo import PseudoGTParams, build_pseudo_gt  # noqa: E402
from sopcorr.siamese.stage import run_training  # noqa: E402
from sopcorr.workflow_support import backbone_settings, siamese_settings  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default=str(REPO / "results" / "default"))
    ap.add_argument("--config", nargs="*", default=None)
    ap.add_argument("--hubs", type=int, default=4)
    ap.add_argument("--min", default="0,1,2")
    ap.add_argument("--work", default=None)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    run = Path(a.run)
    if not (run / "flow" / "improved").is_dir():
        ap.error(f"needs a finished run: {run}/flow/improved not found (snakemake --cores all)")
    cfgs = a.config or [str(REPO / "config" / "config.yaml")] + (
        [str(REPO / "config" / "pfwillow.yaml")] if run.name == "pfwillow" else [])
    config = load_config(*cfgs)
    seed = int(config["seed"])
    work = Path(a.work) if a.work else run / "cycle_training_study" / f"hubs{a.hubs}"
    cats = sorted(p.name[:-5] for p in (run / "features").glob("*.zarr"))
    g = {k: v for k, v in config["flow"]["geometric"].items() if k != "fb_tolerance"}
    teacher = build_pseudo_gt(PseudoGTParams.from_config(
        {"variant": "improved", "geometric": {**g, "seed": seed,
                                              "fb_tolerance": config["flow"]["geometric"]["fb_tolerance"]}}))
    frames = {c: frame_sources(run / "data" / c / "instances.json", run / "features" / f"{c}.zarr",
                               embedding=run / "manifold" / "improved" / c / "embedded.zarr", category=c)
              for c in cats}
    flows = {}
    for c in cats:
        cache = work / f"{c}.npz"
        if cache.is_file():
            flows[c] = dict(np.load(cache))
            continue
        fs = frames[c]["embedding"]
        pairs = [tuple(map(int, p)) for p in FlowStore.open(run / "flow" / "improved" / f"{c}.zarr").pairs]
        hubs = cycle_hubs(len(fs), a.hubs, category_seed(seed, c))
        t = time.time()
        out = pseudo_flows(teacher, fs, pairs, hubs=hubs, cycle_tolerance=config["flow"].get("cycle_tolerance", 1.5))
        out["pairs"] = np.asarray(pairs)
        print(f"# {c}: teacher with {len(hubs)} hubs in {time.time() - t:.1f} s", file=sys.stderr, flush=True)
        work.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **out)
        flows[c] = out
    section = {**siamese_settings(config["siamese"], finetune=False), "device": "cpu",
               "checkpoint_every": config["siamese"]["checkpoint_every"]}
    st = MatcherSettings.from_params({"siamese": {}}, {"flow": "cpu", "siamese": "cpu"})
    ev = config["evaluate"]
    for m in [int(x) for x in a.min.split(",")]:
        model = work / f"min{m}" / "model.pt"
        sources, kept = [], []
        for c in cats:
            f = flows[c]
            valid = f["valid"] & (f["confirmations"] >= m)
            kept.append(float(valid.sum()) / max(1, int(f["valid"].sum())))
            store = work / f"min{m}" / "flow" / f"{c}.zarr"
            if not store.is_dir():
                emb = frames[c]["embedding"].embedding
                write_flow_store(store, [tuple(p) for p in f["pairs"]], f["target_xy"], valid, f["score"], emb.ids,
                                 emb.image_hw, emb.input_size, emb.stride)
            sources.append((str(run / "features" / f"{c}.zarr"), str(store), str(run / "data" / c / "instances.json")))
        if not model.is_file():
            run_training(sources, section, backbone_settings(config["backbone"]), seed, model, None, progress=False)
        row = {"min_confirmations": m, "kept_of_valid": [round(k, 3) for k in kept]}
        pp, dense = [], {}
        for c in cats:
            (meth,) = build_methods(["ours_network"], st, frames[c], {"model": str(model)})
            cat = EvalCategory.from_frames(frames[c]["raw"])
            (rec,) = run_pair_evaluation(cat, [meth], [0.1], ev["max_eval_pairs"], seed)
            row[c] = round(rec["value"], 1)
            pp += rec["per_pair"]
            if has_dense_ground_truth(cat):
                for r in run_dense_evaluation(cat, [meth], [0.1], ev["dense_stride"], ev["max_eval_pairs"], seed):
                    if r["metric"] == "pck@0.1":
                        dense[c] = round(r["value"], 1)
        row["mean"] = round(float(np.mean([row[c] for c in cats])), 1)
        row["per_pair"] = round(float(np.mean(pp)), 1)
        if dense:
            row["dense"] = dense
            row["dense_mean"] = round(float(np.mean(list(dense.values()))), 1)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
