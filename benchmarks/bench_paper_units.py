"""Per-unit costs at the paper's scale (``config/paper.yaml``: VGG16 ``conv5_3`` at 704 px, a
44 x 44 x 512 grid), the figures docs/PERFORMANCE.md projects a VOC-sized run from.

* **features, per image**: VGG16 at 704 px, batches of 4, the feature stage's forward pass and
  layer combination (``sopcorr.features.extract.dense_maps``);
* **matching, per pair** on two 44 x 44 x 512 grids: nearest neighbour (the paper variant's
  pseudo flow and ``nn_raw``) and the geometric matcher (the improved variant's teacher,
  ``ours_geometric``), with the schema's default settings;
* **training, per step**: the paper's flow network (``architecture: paper``) end to end at
  352 px on ``--batch`` pairs (``config/paper.yaml`` trains 20 000 steps of 16 pairs), from
  ``benchmarks/bench_siamese.py``'s training step.

VGG16 runs with random weights when its ImageNet weights are not on the machine (the same
arithmetic, so the same time). Random features stand in for the grids (the matchers' cost does
not depend on the values beyond RANSAC's early exits, which the structured features keep
realistic). The manifold's cost per iteration is ``benchmarks/bench_manifold.py``'s.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_paper_units.py      # about 2 min on 2 cores
    .venv/bin/python benchmarks/bench_paper_units.py --pairs 5 --batch 4
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _cli import positive_int

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

SIZE, GRID, CHANNELS = 704, 44, 512


def feature_seconds_per_image(images: int, device: str) -> tuple[float, str]:
    import torch

    from sopcorr.errors import WeightsError
    from sopcorr.features.backbones import build_backbone
    from sopcorr.features.extract import dense_maps

    try:
        net, weights = build_backbone("vgg16", SIZE, layers=["conv5_3"], device=device), "ImageNet"
    except WeightsError:
        net, weights = build_backbone("vgg16", SIZE, layers=["conv5_3"], device=device, pretrained=False), "random"
    x = torch.randn(4, 3, SIZE, SIZE, device=device)
    with torch.inference_mode():
        maps = dense_maps(net, x[:1], relu=True)  # warm-up
        assert tuple(maps.shape[1:]) == (GRID, GRID, CHANNELS), maps.shape
        t = time.perf_counter()
        done = 0
        while done < images:
            dense_maps(net, x, relu=True)
            done += len(x)
    return (time.perf_counter() - t) / done, weights


def grids(n: int, seed: int = 0):
    """n structured (GRID, GRID, CHANNELS) float32 unit feature grids (bench_manifold's parts)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_manifold import synthetic_features

    f, valid, _ = synthetic_features(n, side=GRID, channels=CHANNELS, seed=seed)
    return f.astype(np.float32), valid


def matching_seconds_per_pair(pairs: int) -> dict[str, float]:
    from sopcorr.flow.geometric import geometric_correspondence
    from sopcorr.flow.nn import nearest_neighbour
    from sopcorr.geometry import FeatureGrid, Letterbox
    from sopcorr.matchers.geometric import GeometricParams

    f, valid = grids(pairs + 1)
    g = FeatureGrid(Letterbox(SIZE, SIZE, SIZE), SIZE // GRID)
    kw = GeometricParams().correspondence_kwargs()
    out = {}
    for name, fn in (("nearest neighbour", lambda a, b: nearest_neighbour(f[a], f[b], g, g, valid[a], valid[b])),
                     ("geometric matcher", lambda a, b: geometric_correspondence(f[a], f[b], g, g, valid[a], valid[b],
                                                                                 **kw))):
        fn(0, 1)  # warm-up
        t = time.perf_counter()
        for k in range(pairs):
            fn(k, k + 1)
        out[name] = (time.perf_counter() - t) / pairs
    return out


def training_seconds_per_step(batch: int, steps: int) -> tuple[float, str]:
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_siamese.py"), "--architecture", "paper", "--device", "cpu",
           "--backbone", "vgg16", "--size", "352", "--batch", str(batch), "--steps", str(steps), "--warmup", "1",
           "--fuse-channels", "512", "--decoder-channels", "128"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bench_siamese.py failed:\n{r.stderr[-2000:]}")
    line = next(ln for ln in r.stdout.splitlines() if "training step:" in ln)
    ms = float(line.split("(")[1].split(" ms/step")[0])
    return ms / 1000.0, line.strip()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=positive_int, default=8, help="images to time the features on (default 8)")
    ap.add_argument("--pairs", type=positive_int, default=3, help="pairs to time each matcher on (default 3)")
    ap.add_argument("--batch", type=positive_int, default=2, help="pairs per training step to time (default 2)")
    ap.add_argument("--steps", type=positive_int, default=2, help="training steps to time (default 2)")
    ap.add_argument("--threads", type=positive_int, default=2)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    print(f"# paper scale: VGG16 conv5_3 at {SIZE} px -> {GRID}x{GRID}x{CHANNELS}; CPU, {args.threads} threads")
    s, w = feature_seconds_per_image(args.images, "cpu")
    print(f"features: {s:.2f} s per image ({w} weights, batches of 4, {args.images} images)", flush=True)
    for name, sec in matching_seconds_per_pair(args.pairs).items():
        print(f"{name}: {sec:.2f} s per pair ({args.pairs} pairs)", flush=True)
    step, line = training_seconds_per_step(args.batch, args.steps)
    print(f"paper network training, 352 px, end to end: {step:.2f} s per step of {args.batch} pairs "
          f"= {step / args.batch:.2f} s per pair  [{line}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
