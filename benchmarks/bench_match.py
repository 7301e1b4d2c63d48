"""Time ``sopcorr match`` without a run: the default method (the geometric matcher on raw
EfficientNet-Lite0 features at 448 px) on a few pairs, as the command computes them.

Prints the load time (backbone + matcher, once per command), then per pair (median over
``--pairs`` pairs after one warm-up pair): the match (both images' features in one forward pass,
the correspondences B -> A for the colours and A -> B for the lines and the .json), the figure
(colouring and drawing a PNG), their sum and its CPU time; and the process's peak memory (max
RSS; importing the CUDA build of torch alone is about 650 MB of it). The goal
(issue 14): match + figure <= 1 s per 448 px pair on 2 CPU cores after the model is loaded.

With no flags (about 1 min on a busy 2-core machine): 8 pairs of synthetic 448 px images generated on the fly.
``--images DIR``: pairs of consecutive photos of a folder instead (e.g. a category folder of
the PF-WILLOW dev split). Pin the cores to measure a 2-core machine on a larger one::

    taskset -c 0,1 python benchmarks/bench_match.py
    python benchmarks/bench_match.py --images ../shared/data/pfwillow_dev/images/car --pairs 10
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _cli import positive_int


def _images(args, ap) -> list:
    from sopcorr.data.generic import read_image

    if args.images:
        folder = Path(args.images)
        if not folder.is_dir():
            ap.error(f"--images {folder}: not a folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if len(files) < 2:
            ap.error(f"--images {folder}: needs at least 2 .png/.jpg images")
        files = files[: args.pairs + 2]
        return [(f.name, read_image(f)) for f in files]
    from sopcorr.data.synthetic import generate

    with tempfile.TemporaryDirectory() as tmp:
        ds = generate(tmp, categories=["quadruped"], images_per_category=args.pairs + 2, image_size=448,
                      pairs_per_category=1, seed=0, occluders=2, image_format="png")
        return [(Path(i.image).name, read_image(ds.path(i.image))) for i in ds.instances]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=positive_int, default=8, help="pairs timed after one warm-up pair (default 8)")
    ap.add_argument("--images", default=None, metavar="DIR", help="a folder of photos (default: synthetic images)")
    ap.add_argument("--method", default="geometric", help="a no-run method of sopcorr match (default geometric)")
    ap.add_argument("--size", type=positive_int, default=448, help="backbone input size (default 448)")
    ap.add_argument("--threads", type=positive_int, default=2, help="torch threads (default 2)")
    ap.add_argument("--lines", type=int, default=10, help="lines drawn in the figure (default 10)")
    args = ap.parse_args()

    import torch

    from sopcorr.errors import SopcorrError
    from sopcorr.match import NO_RUN_METHODS, FeatureSettings, PhotoFeatures, no_run_matcher
    from sopcorr.viz.match import match_figure

    if args.method not in NO_RUN_METHODS:
        ap.error(f"--method: unknown method '{args.method}' (valid: {', '.join(NO_RUN_METHODS)})")
    torch.set_num_threads(args.threads)
    images = _images(args, ap)
    t0 = time.perf_counter()
    try:
        feats = PhotoFeatures(FeatureSettings(input_size=args.size, device="cpu"))
    except SopcorrError as err:
        ap.error(f"--size {args.size}: {err}")
    matcher, desc = no_run_matcher(args.method, device="cpu")
    load = time.perf_counter() - t0
    print(f"sopcorr match --method {args.method}: {desc}; {feats.describe()}")
    print(f"load: {load:.2f} s (backbone + matcher; torch threads {args.threads}, "
          f"{len(os.sched_getaffinity(0))} cores usable, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    t_match, t_fig, cpu = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(min(args.pairs, len(images) - 1) + 1):  # pair 0: warm-up
            (na, a), (nb, b) = images[k], images[(k + 1) % len(images)]
            t1, c1 = time.perf_counter(), time.process_time()
            fa, fb = feats.frames([a, b], [na, nb])
            corr_ab = matcher.correspondence(fa, fb)
            corr_ba = matcher.correspondence(fb, fa)
            t2 = time.perf_counter()
            match_figure(a, b, corr_ba, Path(tmp) / "m.png", corr_ab=corr_ab, names=(na, nb), lines=args.lines,
                         title=f"{na} -> {nb}: {args.method}")
            t3 = time.perf_counter()
            if k:
                t_match.append(t2 - t1)
                t_fig.append(t3 - t2)
                cpu.append(time.process_time() - c1)
    n = len(t_match)
    med_m, med_f = statistics.median(t_match), statistics.median(t_fig)
    hw = images[0][1].shape[:2]
    print(f"per pair (median of {n}, images {hw[1]}x{hw[0]} px): match {med_m:.3f} s, figure {med_f:.3f} s, "
          f"total {med_m + med_f:.3f} s (max total {max(m + f for m, f in zip(t_match, t_fig)):.3f} s; "
          f"CPU time {statistics.median(cpu):.3f} s: wall much above CPU / threads means a busy machine)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 1024 ** 2)
    print(f"peak memory (max RSS of the process): {peak:.0f} MB")
    print(f"goal <= 1 s per pair after loading: {'met' if med_m + med_f <= 1.0 else 'missed'}")


if __name__ == "__main__":
    main()
