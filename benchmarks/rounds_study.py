"""Rounds of self-training (issue 23), measured on a finished run: round r's network teaches
round r + 1.

For every round r = 2 .. R: the round-(r - 1) network's method ``--teacher`` (``ours_network``:
its own read-out; ``ours_network_geometric``: the read-out with the geometric matcher's prior),
kept where forward-backward consistent within ``flow.geometric.fb_tolerance`` cells, matches the
run's pseudo-flow pairs (``flow/improved/<cat>.zarr``: the same pairs as round 1), and a network
is trained on those flows with the pipeline's own training step (``sopcorr.siamese.stage``),
either afresh (``--start afresh``) or from the round before's weights (``--start previous``).
Every round's network is then scored by pair-wise PCK@0.1 on the dataset's pairs (the
``pair_pck`` table's protocol, every pair) with ``--methods``. Round 1 is the run's own
``siamese/improved/model.pt``.

Usage (from the repository root):

    .venv/bin/python benchmarks/rounds_study.py [--run results/pfwillow] [--rounds 3]
        [--teacher ours_network_geometric] [--start afresh|previous] [--work DIR]

Everything a round writes (flow stores, checkpoints) goes under ``--work`` (default
``<run>/rounds_study/<teacher>_<start>``); a round whose checkpoint exists is reused.
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
from sopcorr.evaluate.pairs import run_pair_evaluation  # noqa: E402
from sopcorr.flow.pseudo import FlowStore, pseudo_flows, write_flow_store  # noqa: E402
from sopcorr.matchers.base import ForwardBackward, frame_sources  # noqa: E402
from sopcorr.matchers.methods import MatcherSettings, build_matcher, build_methods  # noqa: E402
from sopcorr.siamese.stage import run_training  # noqa: E402
from sopcorr.workflow_support import backbone_settings, siamese_settings  # noqa: E402

ALPHA = 0.1


def settings(config: dict) -> MatcherSettings:
    g = {k: v for k, v in config["flow"]["geometric"].items() if k != "fb_tolerance"}
    return MatcherSettings.from_params({"geometric": {**g, "seed": config["seed"]}, "siamese": {}},
                                       {"flow": "cpu", "siamese": "cpu"})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default=str(REPO / "results" / "pfwillow"))
    ap.add_argument("--config", nargs="*", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--teacher", default="ours_network_geometric")
    ap.add_argument("--start", choices=["afresh", "previous"], default="afresh")
    ap.add_argument("--methods", default="ours_network,ours_network_geometric")
    ap.add_argument("--work", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--records", default=None, metavar="DIR",
                    help="also write each round's records as DIR/round<r>/eval/<cat>/pairs.json (the pipeline's "
                         "format: benchmarks/pair_significance.py --run DIR/round<r> compares rounds pair by pair)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    run = Path(a.run)
    need = [run / "features", run / "flow" / "improved", run / "siamese" / "improved" / "model.pt"]
    if not all(p.exists() for p in need):
        ap.error(f"needs a finished run with a trained network: {run} lacks "
                 f"{', '.join(str(p) for p in need if not p.exists())} (snakemake --cores all)")
    cfgs = a.config or [str(REPO / "config" / "config.yaml")] + (
        [str(REPO / "config" / "pfwillow.yaml")] if run.name == "pfwillow" else [])
    config = load_config(*cfgs)
    work = Path(a.work) if a.work else run / "rounds_study" / f"{a.teacher}_{a.start}"
    cats = sorted(p.name[:-5] for p in (run / "features").glob("*.zarr"))
    st = settings(config)
    tol = float(config["flow"]["geometric"]["fb_tolerance"])
    section = {**siamese_settings(config["siamese"], finetune=False), "device": "cpu",
               "checkpoint_every": config["siamese"]["checkpoint_every"]}
    backbone = backbone_settings(config["backbone"])
    seed = int(config["seed"])
    methods = a.methods.split(",")
    frames = {c: frame_sources(run / "data" / c / "instances.json", run / "features" / f"{c}.zarr",
                               embedding=run / "manifold" / "improved" / c / "embedded.zarr", category=c)
              for c in cats}
    ck = run / "siamese" / "improved" / "model.pt"
    rows = []
    for r in range(1, a.rounds + 1):
        info = {}
        if r > 1:
            rdir = work / f"round{r}"
            model = rdir / "model.pt"
            if not model.is_file():
                t0 = time.time()
                sources = []
                valid = []
                for c in cats:
                    fs = frames[c]["embedding"]
                    store = rdir / "flow" / f"{c}.zarr"
                    pairs = [tuple(map(int, p)) for p in FlowStore.open(run / "flow" / "improved" / f"{c}.zarr").pairs]
                    matcher = ForwardBackward(build_matcher(a.teacher, st, {"model": str(ck)}), tol)
                    out = pseudo_flows(matcher, fs, pairs)
                    emb = fs.embedding
                    write_flow_store(store, pairs, out["target_xy"], out["valid"], out["score"], emb.ids,
                                     emb.image_hw, emb.input_size, emb.stride,
                                     attrs={"teacher": a.teacher, "round": r, "category": c})
                    valid.append(float(out["valid"].mean()))
                    sources.append((str(run / "features" / f"{c}.zarr"), str(store),
                                    str(run / "data" / c / "instances.json")))
                t1 = time.time()
                run_training(sources, section, backbone, seed, model, None, progress=False,
                             start_from=ck if a.start == "previous" else None)
                info = dict(flow_s=round(t1 - t0, 1), train_s=round(time.time() - t1, 1),
                            valid=[round(v, 3) for v in valid])
            ck = model
        res = {}
        per_pair = {m: [] for m in methods}
        for c in cats:
            ms = build_methods(methods, st, frames[c], {"model": str(ck)})
            recs = run_pair_evaluation(EvalCategory.from_frames(frames[c]["raw"]), ms, [ALPHA],
                                       config["evaluate"]["max_eval_pairs"], seed)
            for rec in recs:
                res.setdefault(rec["method"], {})[c] = rec["value"]
                per_pair[rec["method"]] += rec["per_pair"]
            if a.records:
                out = Path(a.records) / f"round{r}" / "eval" / c / "pairs.json"
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps({"pairs": recs}))
        for m in methods:
            row = dict(round=r, method=m, **{c: round(res[m][c], 1) for c in cats},
                       mean=round(float(np.mean([res[m][c] for c in cats])), 1),
                       per_pair=round(float(np.mean(per_pair[m])), 1), **info)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
