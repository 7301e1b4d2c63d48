"""Time the synthetic benchmark generator: 4 categories x 50 images at 256 px (the issue's
target: < 30 s on 2 cores; about 10 s). Usage: python benchmarks/bench_generator.py
[--categories C ...] [--images N] [--size S] [--repeat R]. Prints wall and CPU seconds and
per-image milliseconds."""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from _cli import positive_int

from sopcorr.data.synthetic import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--categories", nargs="+", default=["bird", "quadruped", "car", "aircraft"])
    ap.add_argument("--images", type=positive_int, default=50)
    ap.add_argument("--size", type=positive_int, default=256)
    ap.add_argument("--repeat", type=positive_int, default=1)
    args = ap.parse_args()
    from sopcorr.data.synthetic import CATEGORIES

    unknown = sorted(set(args.categories) - set(CATEGORIES))
    if unknown:
        ap.error(f"--categories: unknown {', '.join(unknown)} (valid: {', '.join(CATEGORIES)})")
    n = len(args.categories) * args.images
    for r in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), time.process_time()
            generate(tmp, categories=args.categories, images_per_category=args.images, image_size=args.size,
                     pairs_per_category=60, seed=r)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"generator: {len(args.categories)} categories x {args.images} images at {args.size} px: "
              f"wall {wall:.2f} s, cpu {cpu:.2f} s ({1000 * wall / n:.1f} ms/image wall; "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} cpus)")


if __name__ == "__main__":
    main()
