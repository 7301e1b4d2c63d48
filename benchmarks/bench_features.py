"""Feature extraction benchmarks (not tests; they print figures for docs/FEATURES.md).

``throughput`` (default; 16 images, 2 repeats: well under two minutes on 2 CPU cores): images/s of the whole extraction (:func:`extract_images`: image
decoding from memory, letterbox, forward, ReLU/L2/upsampling, float16 zarr writes) against a
bare forward pass of the same truncated network over the same images preloaded as tensors.
Prints ``ratio <x>`` = extraction time / bare forward time (goal <= 1.25)::

    OMP_NUM_THREADS=2 python benchmarks/bench_features.py throughput --backbone efficientnet_lite0 --size 256
    OMP_NUM_THREADS=2 python benchmarks/bench_features.py throughput --backbone vgg16 --size 704 --images 8 --batch 4

(vgg16 runs with random weights written to a temporary state dict: fine for timing.)

``layers`` (several minutes: 13 candidates on 160 synthetic images): which layer combination serves correspondence best. Generates the synthetic
benchmark, extracts dense maps with each candidate, transfers each visible source keypoint of
the dataset's evaluation pairs to the target by cosine nearest neighbour over the target's
valid cells and reports PCK@0.05/0.1 of the target box::

    OMP_NUM_THREADS=2 python benchmarks/bench_features.py layers --images 40 --size 256
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _cli import positive_int

from sopcorr.geometry import FeatureGrid, Letterbox, bilinear_sample


def _import_heavy() -> None:
    """The modules the benchmark computes with, imported after the command line is checked (a
    usage error answers at once, without loading torch)."""
    global torch, build_backbone, combine_layers, extract_images, preprocess, valid_mask
    import torch
    from sopcorr.features.backbones import build_backbone
    from sopcorr.features.extract import combine_layers, extract_images, preprocess, valid_mask


def _random_vgg16_weights(tmp: Path) -> Path:
    import torchvision

    torch.manual_seed(0)
    path = tmp / "vgg16_random_features.pth"
    torch.save(torchvision.models.vgg16(weights=None).features.state_dict(), path)
    return path


def throughput(args) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench_features_"))
    weights = _random_vgg16_weights(tmp) if args.backbone == "vgg16" and args.random_weights else None
    net = build_backbone(args.backbone, args.size, layers=args.layers, weights=weights, device=args.device)
    device = next(net.parameters()).device
    rng = np.random.default_rng(0)
    # images of the synthetic default's size with varied aspect ratios
    hw = [(args.image_size, int(args.image_size * rng.uniform(0.6, 1.0))) for _ in range(args.images)]
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in hw]
    tensors = torch.stack([preprocess(im, args.size, net.spec.mean, net.spec.std)[0] for im in images])
    ids = [f"img/{i}" for i in range(args.images)]

    def bare():
        with torch.inference_mode():
            for s in range(0, args.images, args.batch):
                out = net(tensors[s:s + args.batch].to(device))
                if device.type == "cuda":
                    torch.cuda.synchronize()
        return out

    def full():
        extract_images(net, lambda i: images[i], ids, tmp / "f.zarr", batch_size=args.batch, progress=False)

    bare()  # warm-up (allocations, cudnn autotune)
    full()
    t_bare, t_full, c_bare, c_full = [], [], [], []
    for _ in range(args.repeats):  # interleaved so load changes on the machine hit both alike
        for fn, wall, cpu in ((bare, t_bare, c_bare), (full, t_full, c_full)):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    tb, tf = min(t_bare), min(t_full)
    cb, cf = min(c_bare), min(c_full)
    print(f"backbone {args.backbone} layers {net.layers} input {args.size} grid {net.out_size}x{net.out_size}"
          f"x{net.out_channels} device {device} threads {torch.get_num_threads()} images {args.images} "
          f"batch {args.batch} repeats {args.repeats} (best of)")
    print(f"bare forward  {args.images / tb:8.2f} images/s wall ({tb:.3f} s; process CPU {cb:.3f} s)")
    print(f"extraction    {args.images / tf:8.2f} images/s wall ({tf:.3f} s; process CPU {cf:.3f} s)")
    if device.type == "cpu":
        print(f"cpu-time ratio {cf / cb:.3f}  (robust on a loaded machine)")
    print(f"ratio {tf / tb:.3f}")


# ------------------------------------------------------------------------------ layer study
CANDIDATES = [
    ("efficientnet_lite0", 256, ["stage4"]),
    ("efficientnet_lite0", 256, ["stage5"]),
    ("efficientnet_lite0", 256, ["stage6"]),
    ("efficientnet_lite0", 256, ["stage5", "stage6"]),
    ("efficientnet_lite0", 256, ["stage4", "stage5"]),
    ("efficientnet_lite0", 256, ["stage4", "stage5", "stage6"]),
    ("efficientnet_lite0", 256, ["stage3"]),
    ("efficientnet_lite0", 256, ["stage3", "stage5"]),
    ("efficientnet_lite0", 256, ["stage3", "stage5", "stage6"]),
    ("efficientnet_lite0", 256, ["stage3", "stage4", "stage5", "stage6"]),
    ("efficientnet_lite0", 320, ["stage5", "stage6"]),
    ("efficientnet_lite0", 384, ["stage5", "stage6"]),
    ("efficientnet_lite0", 384, ["stage4", "stage5", "stage6"]),
]


def _raw(net, ds):
    """{image id: {layer: (1, C_l, h_l, w_l)}} raw layer outputs and {image id: Letterbox}."""
    from sopcorr.data.generic import read_image

    feats, lbs = {}, {}
    with torch.inference_mode():
        for inst in ds.instances:
            x, lb = preprocess(read_image(ds.path(inst.image)), net.input_size, net.spec.mean, net.spec.std)
            feats[inst.id] = net(x[None])
            lbs[inst.id] = lb
    return feats, lbs


def pair_pck(ds, feats, lbs, stride, alphas=(0.05, 0.1)):
    from sopcorr.evaluate.pck import pck

    """Cosine-NN keypoint transfer over the dataset's pairs; {alpha: PCK in %}."""
    by_id = ds.by_id()
    hits = {a: [0, 0] for a in alphas}
    for src, tgt in ds.pairs:
        s, t = by_id[src], by_id[tgt]
        names = [n for n in s.keypoints if n in t.keypoints and s.keypoints[n][2] and t.keypoints[n][2]]
        if not names:
            continue
        sxy = np.array([s.keypoints[n][:2] for n in names])
        txy = np.array([t.keypoints[n][:2] for n in names])
        sgrid, tgrid = FeatureGrid(lbs[src], stride), FeatureGrid(lbs[tgt], stride)
        q = bilinear_sample(feats[src], sgrid.image_to_cell(sxy))
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-6)
        tv = valid_mask(lbs[tgt], stride)
        tf = feats[tgt][tv]
        cells = np.argwhere(tv)[:, ::-1].astype(float)  # (col, row)
        best = (q @ tf.T).argmax(1)
        pred = tgrid.cell_to_image(cells[best])
        for a in alphas:
            c, n = pck(pred, txy, np.ones(len(names)), t.bbox, a)
            hits[a][0] += c
            hits[a][1] += n
    return {a: 100.0 * c / max(n, 1) for a, (c, n) in hits.items()}


def layers(args) -> None:
    from sopcorr.data.synthetic import generate

    root = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="bench_layers_"))
    if (root / "dataset.json").exists():
        from sopcorr.data.generic import load_dataset
        ds = load_dataset(root, check_images=False)
    else:
        ds = generate(root, images_per_category=args.images, image_size=args.image_size,
                      pairs_per_category=args.pairs, seed=0)
    cats = sorted(ds.categories)
    print(f"synthetic: {len(ds.instances)} images ({', '.join(cats)}), {len(ds.pairs)} pairs")
    print("| backbone | input | layers | grid | C | " + " | ".join(cats) + " | mean PCK@0.1 | mean PCK@0.05 |")
    print("|---|---|---|---|---|" + "---|" * len(cats) + "---|---|")
    groups: dict = {}
    for name, size, lay in CANDIDATES:
        if args.size and size != args.size:
            continue
        groups.setdefault((name, size), []).append(lay)
    for (name, size), subsets in groups.items():
        union = sorted({l for lay in subsets for l in lay})
        net = build_backbone(name, size, layers=union)
        t0 = time.perf_counter()
        raw = {cat: _raw(net, ds.of_category(cat)) for cat in cats}
        ms = 1000 * (time.perf_counter() - t0) / len(ds.instances)
        for lay in subsets:
            sub_net = build_backbone(name, size, layers=lay)
            for relu in ([True, False] if args.relu_ablation else [True]):
                row10, row05 = [], []
                for cat in cats:
                    feats, lbs = raw[cat]
                    maps = {k: combine_layers(v, sub_net.layers, relu=relu)[0].numpy() for k, v in feats.items()}
                    r = pair_pck(ds.of_category(cat), maps, lbs, sub_net.out_stride)
                    row10.append(r[0.1])
                    row05.append(r[0.05])
                tag = "" if relu else " (no ReLU)"
                print(f"| {name} | {size} | {'+'.join(sub_net.layers)}{tag} | {sub_net.out_size}x{sub_net.out_size} "
                      f"| {sub_net.out_channels} | " + " | ".join(f"{v:.1f}" for v in row10)
                      + f" | **{np.mean(row10):.1f}** | {np.mean(row05):.1f} |", flush=True)
        print(f"(forward of {'+'.join(union)} at {size}: {ms:.0f} ms/img incl. decoding, shared machine)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    t = sub.add_parser("throughput")
    t.add_argument("--backbone", default="efficientnet_lite0")
    t.add_argument("--size", type=positive_int, default=256)
    t.add_argument("--layers", nargs="*", default=None)
    t.add_argument("--images", type=positive_int, default=16)
    t.add_argument("--image-size", type=positive_int, default=256, help="long side of the test images")
    t.add_argument("--batch", type=positive_int, default=8)
    t.add_argument("--repeats", type=positive_int, default=2)
    t.add_argument("--device", default="auto")
    t.add_argument("--random-weights", action=argparse.BooleanOptionalAction, default=True,
                   help="vgg16: time with random weights (no download needed)")
    l = sub.add_parser("layers")
    l.add_argument("--images", type=positive_int, default=40)
    l.add_argument("--image-size", type=positive_int, default=256)
    l.add_argument("--pairs", type=positive_int, default=60)
    l.add_argument("--size", type=int, default=0, help="only candidates at this input size (0: all)")
    l.add_argument("--relu-ablation", action="store_true", help="also without ReLU")
    l.add_argument("--data", default=None, help="reuse (or create) the synthetic dataset here")
    args = ap.parse_args()
    _import_heavy()
    from sopcorr.errors import SopcorrError

    try:
        if args.cmd == "layers":
            layers(args)
        else:
            if args.cmd is None:
                args = ap.parse_args(["throughput"])
            throughput(args)
    except SopcorrError as exc:  # a bad backbone, layer or device: one line and the usage
        ap.error(str(exc))


if __name__ == "__main__":
    main()
