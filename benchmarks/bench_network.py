"""Inference time of the correlation network: one pair of images matched by its own read-out
(letterbox, one batched encoder pass, head, correlation, kernel soft-argmax), on the CPU.

    .venv/bin/python benchmarks/bench_network.py [--checkpoint results/pfwillow/siamese/improved/model.pt]
        [--size 448] [--threads 2] [--repeat 10] [IMAGE_A IMAGE_B]

Without a checkpoint an untrained head of the default width is timed (the time does not depend
on the weights); without images two random 640 x 480 images. Prints the median wall-clock and
process CPU seconds per pair (CPU seconds / threads is what an idle machine's wall clock would
be at best: the figure to trust on a busy machine) and the grid.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sopcorr.errors import SopcorrError  # noqa: E402
from sopcorr.matchers.correlation_network import CorrelationNetworkMatcher, CorrelationNetworkParams  # noqa: E402
from sopcorr.siamese.checkpoint import save_checkpoint  # noqa: E402
from sopcorr.siamese.correlation.net import NetworkSpec, build_network  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--layers", default="stage5,stage6", help="encoder layers of the untrained head (default: the features')")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("images", nargs="*")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    ck = a.checkpoint
    if ck is None:
        import tempfile

        layers = tuple(a.layers.split(","))
        spec = NetworkSpec("efficientnet_lite0", a.size, layers, False, 304, 16)
        net = build_network(spec, with_encoder=False)
        ck = Path(tempfile.mkdtemp()) / "untrained.pt"
        save_checkpoint(ck, dict(model=net.state_dict(), spec=spec.to_dict(), step=0))
    try:
        m = CorrelationNetworkMatcher(CorrelationNetworkParams(device="cpu"), ck)
    except SopcorrError as exc:
        ap.error(str(exc))
    if a.images:
        from sopcorr.data.generic import read_image

        img_a, img_b = (read_image(p) for p in a.images[:2])
    else:
        rng = np.random.default_rng(0)
        img_a, img_b = (rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(2))
    m.match_images(img_a, img_b)  # warm-up
    wall, cpu = [], []
    for _ in range(a.repeat):
        t, c = time.perf_counter(), time.process_time()
        corr = m.match_images(img_a, img_b)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    h, w = corr.valid.shape
    print(f"network read-out, {m.spec.backbone} at {m.size} px -> {h}x{w} grid, D = {m.spec.descriptor_dim}, "
          f"{a.threads} threads: median {statistics.median(wall):.3f} s wall, {statistics.median(cpu):.3f} CPU s "
          f"per pair (CPU s / threads = {statistics.median(cpu) / a.threads:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
