"""Speed and memory of one manifold iteration (KFD -> embed -> Ward -> part models -> graph cut).

Synthetic 44x44 feature grids (the paper's VGG16 conv5 size) with a part structure: every
image shows an object made of ``--true-parts`` Voronoi parts around jittered centres on a
background; features are ReLU(part prototype + noise), L2-normalised per cell, float16.
Each size runs in a fresh subprocess (so peak RSS is per size): the loop's initialisation
(iteration 0) and one KFD iteration (iteration 1) are run and iteration 1 is reported.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_manifold.py            # 50 100 (~1.5 min)
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_manifold.py --full     # 50 100 200 400 (~6 min)
    .venv/bin/python benchmarks/bench_manifold.py --sizes 50 100 --channels 256
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_manifold.py --sizes 1000 --config config/paper.yaml

The loop's parameters are :class:`~sopcorr.manifold.refine.ManifoldParams`' defaults (the
benchmark's defaults, with which the goals in docs/MANIFOLD.md were measured); ``--config
FILE...`` takes the ``manifold`` section (and ``seed``) of those config files instead (merged
left to right, over the schema's defaults, as the pipeline reads them: e.g. ``config/paper.yaml``'s
1000 landmarks, kernel rank 512, 50 000 fit samples and 500 pre-clusters). Either way one
iteration is run and reported (``max_iter`` 1, ``tol`` 0).

The goals of docs/MANIFOLD.md (200 images <= 30 s per iteration, <= 4 GB, exponent <= 1.1) need
``--full``; with no flags two sizes keep it within about two minutes on 2 cores.

Prints per-step seconds, peak RSS, graph-cut ms per image and the scaling exponent of the
iteration time (least squares on log-log from the smallest to the largest size).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from _cli import positive_int, require_paths


def synthetic_features(n_images: int, side: int = 44, channels: int = 512, true_parts: int = 10, seed: int = 0):
    """(N, side, side, C) float16 features, (N, side, side) valid, (N, side, side) part ids."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(true_parts + 1, channels)).astype(np.float32)
    base = rng.normal(size=(true_parts, 2)) * side / 6
    yy, xx = np.mgrid[:side, :side].astype(np.float32)
    feats = np.empty((n_images, side, side, channels), np.float16)
    gt = np.zeros((n_images, side, side), np.int16)
    for i in range(n_images):
        c = np.array([side / 2, side / 2]) + rng.normal(size=2) * 3
        cent = c + base * rng.uniform(0.8, 1.2) + rng.normal(size=base.shape)
        d = (yy[..., None] - cent[:, 0]) ** 2 + (xx[..., None] - cent[:, 1]) ** 2
        lab = 1 + np.argmin(d, -1)
        inside = ((yy - c[0]) / (side * 0.38)) ** 2 + ((xx - c[1]) / (side * 0.42)) ** 2 < 1
        lab[~inside] = 0
        gt[i] = lab
        f = protos[lab] + 1.5 * rng.standard_normal((side, side, channels), dtype=np.float32)
        f = np.maximum(f, 0)
        f /= np.linalg.norm(f, axis=-1, keepdims=True) + 1e-6
        feats[i] = f
    valid = np.ones((n_images, side, side), bool)
    return feats, valid, gt


def loop_params(config_paths=None):
    """The :class:`ManifoldParams` of one benchmarked iteration: the dataclass defaults, or the
    ``manifold`` section of the merged, validated config files (``from_config``, no category),
    with ``max_iter`` 1 and ``tol`` 0."""
    from sopcorr.manifold.refine import ManifoldParams

    if not config_paths:
        return ManifoldParams(max_iter=1, tol=0.0)
    from sopcorr.config import load_config

    cfg = load_config(*config_paths)
    return dataclasses.replace(ManifoldParams.from_config(cfg["manifold"], seed=cfg["seed"]), max_iter=1, tol=0.0)


def worker(n: int, channels: int, threads: int, params) -> dict:
    """One size in this process: ``params`` from :func:`loop_params`."""
    from threadpoolctl import threadpool_limits

    from sopcorr.manifold.refine import run_manifold

    threadpool_limits(threads)
    t = time.perf_counter()
    feats, valid, gt = synthetic_features(n, channels=channels)
    gen_s = time.perf_counter() - t
    r = run_manifold(feats, valid, params, gt_parts=gt)
    row = r.rows[1]
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    return {"images": n, "cells": row["n_cells"], "generate_s": gen_s, "rss_gb": rss_gb,
            **{k: row[k] for k in row if k.startswith("seconds_")},
            "graphcut_ms_per_image": 1000 * row["seconds_graphcut"] / n,
            "iter0_s": r.rows[0]["seconds_total"], "ari_iter0": r.rows[0]["ari"], "ari_iter1": row["ari"],
            "graphcut_relabelled": row["graphcut_relabelled"], "cpu_seconds": row["cpu_seconds"],
            "load_avg": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=positive_int, nargs="+", default=None,
                    help="images per run (default 50 100; --full: 50 100 200 400)")
    ap.add_argument("--full", action="store_true", help="the sizes of docs/MANIFOLD.md: 50 100 200 400")
    ap.add_argument("--channels", type=positive_int, default=512)
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument("--config", nargs="+", default=None, metavar="FILE",
                    help="take the loop's settings from these config files' manifold section (default: "
                         "ManifoldParams' defaults), e.g. config/paper.yaml")
    ap.add_argument("--worker", type=positive_int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.sizes is None:
        a.sizes = [50, 100, 200, 400] if a.full else [50, 100]
    elif a.full:
        ap.error("--full and --sizes exclude each other")
    if a.config:
        require_paths(ap, a.config, "a config file")
    from sopcorr.errors import SopcorrError

    try:
        p = loop_params(a.config)
    except SopcorrError as exc:
        ap.error(str(exc))
    if a.config and a.worker is None:
        keys = ("n_parts", "n_components", "landmarks", "kernel_rank", "fit_samples", "precluster", "init_dims",
                "pairwise", "recluster_until", "raw_weight")
        print(f"manifold settings of {' '.join(a.config)}: "
              + ", ".join(f"{k} {getattr(p, k)}" for k in keys), flush=True)
    if a.worker is not None:
        print(json.dumps(worker(a.worker, a.channels, a.threads, p)))
        return
    res = []
    for n in a.sizes:
        out = subprocess.run([sys.executable, __file__, "--worker", str(n), "--channels", str(a.channels),
                              "--threads", str(a.threads), *(["--config", *a.config] if a.config else [])],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            sys.exit(out.returncode)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        res.append(r)
        steps = ", ".join(f"{k[8:]} {r[k]:.1f}" for k in r if k.startswith("seconds_") and k != "seconds_total")
        print(f"{n} images: {r['seconds_total']:.1f} s per iteration ({steps}; CPU time {r['cpu_seconds']:.1f} s, "
              f"load average {r['load_avg']:.1f}); peak RSS {r['rss_gb']:.2f} GB; "
              f"graph cut {r['graphcut_ms_per_image']:.1f} ms/image; ARI {r['ari_iter0']:.3f} -> {r['ari_iter1']:.3f}",
              flush=True)
    if len(res) >= 2:
        x = np.log([r["images"] for r in res])
        y = np.log([r["seconds_total"] for r in res])
        slope = np.polyfit(x, y, 1)[0]
        print(f"scaling exponent (time per iteration vs images, {res[0]['images']}..{res[-1]['images']}): {slope:.2f}")
        yc = np.log([r["cpu_seconds"] for r in res])
        print(f"scaling exponent of the CPU time: {np.polyfit(x, yc, 1)[0]:.2f}")
        for step in ("kfd", "embed", "cluster", "models", "graphcut"):
            ys = np.log([max(r[f"seconds_{step}"], 1e-3) for r in res])
            print(f"  {step}: exponent {np.polyfit(x, ys, 1)[0]:.2f}")


if __name__ == "__main__":
    main()
