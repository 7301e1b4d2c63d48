"""CPU seconds of the keypoint evaluation (the ``eval_keypoints`` job's library call,
``run_keypoint_evaluation`` with Table 2's methods) for several ``evaluate.threshold_queries``
values on a finished run (issue 20: the absence threshold's cost). CPU time, not wall time: it
holds on a machine shared with other jobs.

Usage (from the repository root, after ``snakemake --cores all``):

    .venv/bin/python benchmarks/bench_threshold.py [--run results/default] [--categories car,quadruped]
        [--queries 8,12,16,null] [--config config/config.yaml ...]

Measured on the synthetic default (2 shared cores, issue 20): 8 queries 11.5 CPU s per category,
12 queries 13.7, 16 queries 16.1, all (null) 24.2; about 2 minutes for the default flags.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import positive_int, require_paths  # noqa: E402


def queries(text: str):
    """argparse type: a comma list of positive integers or null."""
    return [None if t == "null" else positive_int(t) for t in text.split(",")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="results/default", help="a finished run (default results/default)")
    ap.add_argument("--categories", default="car,quadruped", help="comma list (default car,quadruped)")
    ap.add_argument("--queries", type=queries, default=queries("8,12,16,null"),
                    help="threshold_queries values, comma list, null = all (default 8,12,16,null)")
    ap.add_argument("--config", nargs="+", default=["config/config.yaml"],
                    help="the run's config files (default config/config.yaml)")
    args = ap.parse_args(argv)
    run = Path(args.run)
    cats = args.categories.split(",")
    need = [run / "siamese" / "improved" / f for f in ("model.pt", "finetuned.pt")]
    for c in cats:
        need += [run / "data" / c / "instances.json", run / "features" / f"{c}.zarr",
                 run / "manifold" / "improved" / c / "embedded.zarr"]
    require_paths(ap, need, "a finished run (snakemake --cores all)")

    import torch

    from sopcorr.config import load_config
    from sopcorr.evaluate.category import EvalCategory
    from sopcorr.evaluate.keypoints import run_keypoint_evaluation
    from sopcorr.matchers.base import frame_sources
    from sopcorr.matchers.methods import MatcherSettings, build_methods

    torch.set_num_threads(1)
    cfg = load_config(*args.config)
    ev, fl = cfg["evaluate"], cfg["flow"]
    geometric = {k: v for k, v in fl["geometric"].items() if k != "fb_tolerance"}
    geometric["seed"] = cfg["seed"]
    # the eval_keypoints job's matcher params (workflow/rules/common.smk, matcher_params)
    params = {"nn": {}, "geometric": geometric, "siamese": {},
              "siftflow": {**{k: fl[k] for k in fl if k.startswith("siftflow_")},
                           "siftflow_radius": ev["siftflow_radius"]}}
    checkpoints = {k: run / "siamese" / "improved" / f"{k}.pt" for k in ("model", "finetuned")}
    print(f"# run {run}, methods {ev['localisation_methods']}, K = {ev['k_neighbors']}")
    for cat in cats:
        for n in args.queries:
            frames = frame_sources(run / "data" / cat / "instances.json", run / "features" / f"{cat}.zarr",
                                   embedding=run / "manifold" / "improved" / cat / "embedded.zarr", category=cat)
            c0, w0 = time.process_time(), time.time()
            methods = build_methods(ev["localisation_methods"],
                                    MatcherSettings.from_params(params, {"flow": "cpu", "siamese": "cpu"}),
                                    frames, checkpoints)
            run_keypoint_evaluation(EvalCategory.from_frames(frames["raw"]), methods, k=ev["k_neighbors"],
                                    alpha=ev["alpha"], sigma_min=ev["prior_sigma_min"], vote_sigma=ev["vote_sigma"],
                                    n_threshold_queries=n, seed=cfg["seed"])
            print(f"{cat} threshold_queries={'null' if n is None else n}: {time.process_time() - c0:.1f} CPU s, "
                  f"{time.time() - w0:.1f} wall s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
