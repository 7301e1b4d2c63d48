"""Speed of the flow module (not a test; prints figures for docs/FLOW.md).

``speed`` (default, well under a minute): SIFT-flow optimiser on random smooth descriptor grids (both schedules),
dense nearest neighbour and dense SIFT, each the median of ``--repeats`` runs (wall and
process CPU seconds)::

    OMP_NUM_THREADS=1 python benchmarks/bench_siftflow.py speed
    OMP_NUM_THREADS=1 python benchmarks/bench_siftflow.py speed --grid 44 --channels 512

``quality``: dense PCK@0.1 against the synthetic benchmark's exact ground truth for nearest
neighbour on raw features, conv-flow and SIFT-flow (radius 20/40/80), on a run's feature
stores (``results/<run>/features/<cat>.zarr`` + ``data/<cat>/instances.json``)::

    OMP_NUM_THREADS=1 python benchmarks/bench_siftflow.py quality --run default --pairs 15
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.ndimage import gaussian_filter

from _cli import positive_int, require_paths

from sopcorr.flow.dsift import dense_sift
from sopcorr.flow.siftflow import DEFAULTS, siftflow, siftflow_correspondence
from sopcorr.geometry import DenseCorrespondence, FeatureGrid, Letterbox


def _timeit(fn, repeats):
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu))


def _field(rng, n, c):
    x = np.abs(gaussian_filter(rng.standard_normal((n, n, c)), (1.5, 1.5, 0))) + 0.05
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def speed(args):
    from sopcorr.flow.nn import nearest_neighbour

    rng = np.random.default_rng(0)
    n, c = args.grid, args.channels
    s2 = _field(rng, n, c)
    yy, xx = np.mgrid[0:n, 0:n]
    fx = np.rint(3 * np.sin(2 * np.pi * yy / n)).astype(int)
    fy = np.rint(2 * np.cos(2 * np.pi * xx / n)).astype(int)
    s1 = s2[np.clip(yy + fy, 0, n - 1), np.clip(xx + fx, 0, n - 1)]
    print(f"grid {n}x{n}, {c} channels, window +-{args.window}, {args.levels} levels, "
          f"{args.iterations} iterations/level")
    for schedule in ("parallel", "sequential"):
        res = {}
        w, cp = _timeit(lambda: res.update(out=siftflow(
            s1, s2, levels=args.levels, window=args.window, iterations=args.iterations,
            schedule=schedule)), args.repeats)
        flow, e = res["out"]
        acc = float(((flow[..., 0] == fx) & (flow[..., 1] == fy)).mean())
        print(f"siftflow {schedule:10s}: {w:.3f} s wall, {cp:.3f} s cpu, energy {e:.2f}, "
              f"exact flow on {100 * acc:.1f} % of cells")
    g = FeatureGrid(Letterbox(n * 8, n * 8, n * 8), 8)
    for mutual in (False, True):
        w, cp = _timeit(lambda: nearest_neighbour(s1, s2, g, g, mutual=mutual), args.repeats)
        print(f"nearest_neighbour mutual={mutual}: {w * 1e3:.1f} ms wall, {cp * 1e3:.1f} ms cpu")
    img = np.clip((gaussian_filter(rng.random((n * 8, n * 8)), 2) - 0.5) * 2000 + 128, 0, 255).astype(np.uint8)
    for r in (20, 40, 80):
        w, cp = _timeit(lambda: dense_sift(img, r, grid=g), args.repeats)
        print(f"dense_sift r{r} on {n * 8}x{n * 8} px, {n}x{n} points: {w * 1e3:.1f} ms wall, {cp * 1e3:.1f} ms cpu")


def quality(args):
    from sopcorr.data import groundtruth as gt
    from sopcorr.flow.nn import nearest_neighbour
    from sopcorr.data.generic import load_dataset, read_image
    from sopcorr.evaluate.dense import dense_metrics, sample_points
    from sopcorr.evaluate.pck import box_size
    from sopcorr.features.store import FeatureStore

    root = f"results/{args.run}"
    for cat in args.categories:
        ds = load_dataset(f"{root}/data/{cat}/instances.json", check_images=False)
        st = FeatureStore.open(f"{root}/features/{cat}.zarr")
        by, ids = ds.by_id(), st.ids
        cache = {}

        def sift(i, r):
            if (i, r) not in cache:
                cache[i, r] = dense_sift(read_image(ds.path(by[ids[i]].image)), r, grid=st.grid(i))
            return cache[i, r]

        def zero(s, t):
            g = st.grid(s)
            return DenseCorrespondence(g.cell_centers_image().astype(np.float32),
                                       np.ones(g.shape, np.float32), g.valid_mask(), g)

        def args_(s, t):
            return st.grid(s), st.grid(t), st.valid[s], st.valid[t]

        methods = {
            "zero flow": zero,
            "nn raw": lambda s, t: nearest_neighbour(st.load(s), st.load(t), *args_(s, t)),
            "conv-flow": lambda s, t: siftflow_correspondence(st.load(s), st.load(t), *args_(s, t)).correspondence,
        }
        for r in (20, 40, 80):
            methods[f"sift-flow r{r}"] = (lambda r: lambda s, t: siftflow_correspondence(
                sift(s, r), sift(t, r), *args_(s, t)).correspondence)(r)
        pairs = ds.pairs[: args.pairs]
        for name, fn in methods.items():
            vals, t0 = [], time.process_time()
            for a, b in pairs:
                s, t = ids.index(a), ids.index(b)
                ia, ib = by[a], by[b]
                field = gt.dense_correspondence(gt.read_canonical(ds.path(ia.canonical)), gt.read_parts(ds.path(ia.parts)),
                                                gt.read_canonical(ds.path(ib.canonical)), gt.read_parts(ds.path(ib.parts)))
                src, g = sample_points(field, 8)
                xy, _ = fn(s, t).transfer(src)
                vals.append(dense_metrics(xy, np.ones(len(src), bool), g, box_size(ib.bbox), [0.1])["pck@0.1"])
            print(f"{cat:10s} {name:14s} dense PCK@0.1 {np.nanmean(vals):.3f}  "
                  f"({len(pairs)} pairs, {time.process_time() - t0:.1f} s cpu)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="speed", choices=["speed", "quality"])
    ap.add_argument("--grid", type=positive_int, default=32)
    ap.add_argument("--channels", type=positive_int, default=128)
    ap.add_argument("--window", type=positive_int, default=DEFAULTS["window"])
    ap.add_argument("--levels", type=positive_int, default=DEFAULTS["levels"])
    ap.add_argument("--iterations", type=positive_int, default=DEFAULTS["iterations"])
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--run", default="default", help="quality: the finished run results/<run>")
    ap.add_argument("--categories", nargs="+", default=["car", "quadruped"])
    ap.add_argument("--pairs", type=positive_int, default=15)
    args = ap.parse_args()
    if args.mode == "quality":
        root = f"results/{args.run}"
        require_paths(ap, [p for cat in args.categories for p in (f"{root}/data/{cat}/instances.json",
                                                                  f"{root}/features/{cat}.zarr")],
                      f"a run of the synthetic benchmark with these categories' feature stores (run "
                      f"`snakemake --cores all` from the repository root, or pass --run/--categories)")
    speed(args) if args.mode == "speed" else quality(args)


if __name__ == "__main__":
    main()
