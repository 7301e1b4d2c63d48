"""GPU check of the pipeline's Siamese rules on a tiny real category, through the rules' own calls.

In a temp dir: one synthetic category (``sopcorr.data.synthetic.generate``, ``--images`` images at
``--size`` px) and its instances.json (``prepare_category``); its EfficientNet-Lite0 feature store
(``features.extract.extract_category``, the ImageNet weights) on the chosen device; a flow store
whose teacher moves every cell one cell to the right (``flow.pseudo.write_flow_store``, as the
``run`` fixture of tests/test_siamese_stage.py). Then ``siamese.stage.run_training`` on the device,
the correlation network with the schema's defaults (``freeze_encoder: true``: the head on the cached
grids), ``--steps`` steps each:

1. ``train_siamese``: a new network;
2. a self-training round that continues the previous checkpoint (``start_from=``; skipped, with a
   line that says so, where this checkout's ``run_training`` has no ``start_from``);
3. ``finetune_siamese``: fine-tuning the last checkpoint (``init_checkpoint=``).

Each step prints its seconds, pairs/s (steps x batch / seconds, set-up included), first and last
loss, and on CUDA the peak GPU memory. Last, the checkpoints trained on the device are read back
on the CPU (``read_checkpoint`` / ``model_from_checkpoint``) and the ``ours_network`` matcher
(``build_matcher``) matches two images on the CPU. Exit status 1 on any failure.

    python benchmarks/gpu_rules.py                       # auto: CUDA when visible
    python benchmarks/gpu_rules.py --device cpu --steps 5
"""
from __future__ import annotations

import argparse
import inspect
import sys
import tempfile
import time
import traceback
from pathlib import Path

from _cli import positive_int

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

CATEGORY = "bird"


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _category(tmp: Path, size: int, images: int) -> Path:
    """The synthetic category and its instances.json (the data stage's)."""
    from sopcorr.data.prepare import prepare_category
    from sopcorr.data.synthetic import generate

    ds = generate(tmp / "dataset", categories=[CATEGORY], images_per_category=images, image_size=size,
                  pairs_per_category=2, seed=0, occluders=2)
    out = tmp / "data" / CATEGORY / "instances.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    prepare_category(ds, CATEGORY, out)
    return out


def _flow_store(features: Path, out: Path) -> int:
    """Every ordered pair of images; the teacher moves each cell one cell right (confidence 0.8)."""
    import numpy as np

    from sopcorr.features.store import FeatureStore
    from sopcorr.flow.pseudo import write_flow_store

    store = FeatureStore.open(features)
    n = len(store.ids)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    txy = np.stack([store.grid(j).cell_to_image(store.grid(i).image_to_cell(store.grid(i).cell_centers_image())
                                                + [1.0, 0.0]) for i, j in pairs]).astype(np.float32)
    P, h, w = len(pairs), *store.valid.shape[1:]
    write_flow_store(out, pairs, txy, np.stack([store.valid[i] for i, _ in pairs]),
                     np.full((P, h, w), 0.8, np.float32), store.ids, store.image_hw, store.input_size, store.stride)
    return P


def _timed(label: str, dev, fn, pairs_per_step: int | None = None, steps: int | None = None):
    """Run fn() on the device; print seconds, pairs/s, losses and peak GPU memory."""
    import torch

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    _sync(dev)
    t = time.perf_counter()
    out = fn()
    _sync(dev)
    s = time.perf_counter() - t
    parts = [f"{label}: {s:.2f} s"]
    if steps:
        parts.append(f"{steps * pairs_per_step / s:.1f} pairs/s ({steps} steps x {pairs_per_step} pairs, set-up included)")
    if isinstance(out, list):
        if not out:
            raise RuntimeError(f"{label}: no losses (no optimisation ran)")
        if not all(v == v and abs(v) < float("inf") for v in out):
            raise RuntimeError(f"{label}: a loss is not finite ({out[:3]}...)")
        parts.append(f"loss {out[0]:.4f} -> {out[-1]:.4f}")
    if dev.type == "cuda":
        parts.append(f"peak GPU memory {torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MiB")
    print("  " + ", ".join(parts), flush=True)
    return out


def _cpu_readout(paths: dict, instances: Path) -> None:
    """The device-trained checkpoints rebuilt on the CPU; the ours_network matcher on two images."""
    import numpy as np
    import torch

    from sopcorr.data.generic import load_dataset, read_image
    from sopcorr.matchers.methods import MatcherSettings, build_matcher
    from sopcorr.matchers.networks import NetworkParams
    from sopcorr.siamese.checkpoint import model_from_checkpoint, read_checkpoint

    ds = load_dataset(instances, check_images=False)
    insts = sorted(ds.instances, key=lambda i: i.id)
    img0, img1 = read_image(ds.path(insts[0].image)), read_image(ds.path(insts[1].image))
    for name, path in paths.items():
        ck = read_checkpoint(path)
        model = model_from_checkpoint(ck, device="cpu")
        devs = {p.device.type for p in model.parameters()} | {b.device.type for b in model.buffers()}
        if devs != {"cpu"}:
            raise RuntimeError(f"{name}: the model rebuilt on the CPU has tensors on {sorted(devs)}")
        matcher = build_matcher("ours_network", MatcherSettings(siamese=NetworkParams(device="cpu")), {"model": path})
        with torch.no_grad():
            corr = matcher.match_images(img0, img1)
        xy = np.asarray(corr.target_xy)
        valid = np.asarray(corr.valid)
        if xy.shape[:2] != valid.shape or not np.isfinite(xy[valid]).all() or not valid.any():
            raise RuntimeError(f"{name}: the CPU read-out is not a dense correspondence "
                               f"(target_xy {xy.shape}, {int(valid.sum())} valid cells)")
        print(f"  CPU reload OK: {name} ({ck.architecture}, backbone {ck.spec.backbone}, step "
              f"{ck.data.get('step')}) -> ours_network on the CPU: grid {valid.shape[0]}x{valid.shape[1]}, "
              f"{int(valid.sum())} valid cells, finite targets", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    ap.add_argument("--size", type=positive_int, default=128, help="backbone input size and image size (px)")
    ap.add_argument("--images", type=positive_int, default=6, help="images in the category (>= 4)")
    ap.add_argument("--steps", type=positive_int, default=30, help="optimisation steps of each rule")
    a = ap.parse_args(argv)
    if a.images < 4:
        ap.error("--images: at least 4 (the split keeps two test images)")

    import torch

    from sopcorr.config import validate_config
    from sopcorr.device import resolve_device
    from sopcorr.features.extract import extract_category
    from sopcorr.siamese.stage import run_training

    dev = resolve_device(a.device)
    print(f"device {dev}, torch {torch.__version__}"
          + (f", GPU {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else ""), flush=True)
    cfg = validate_config({
        "backbone": {"name": "efficientnet_lite0", "input_size": a.size, "device": dev.type},
        "siamese": {"device": dev.type, "architecture": "correlation", "freeze_encoder": True,
                    "correlation": {"steps": a.steps, "finetune_steps": a.steps}},
    })
    backbone, section = cfg["backbone"], cfg["siamese"]
    batch = section["correlation"]["batch_size"]
    start_from = "start_from" in inspect.signature(run_training).parameters
    failed = False
    with tempfile.TemporaryDirectory(prefix="gpu_rules_") as d:
        tmp = Path(d)
        try:
            t = time.perf_counter()
            instances = _category(tmp, a.size, a.images)
            print(f"  data: {a.images} synthetic '{CATEGORY}' images at {a.size} px in {time.perf_counter() - t:.2f} s",
                  flush=True)
            features = tmp / "features" / f"{CATEGORY}.zarr"
            _timed(f"extract_category (efficientnet_lite0 at {a.size} px, ImageNet weights)", dev,
                   lambda: extract_category(instances, features, backbone, device=dev.type, progress=False))
            flow = tmp / "flow" / f"{CATEGORY}.zarr"
            n_pairs = _flow_store(features, flow)
            print(f"  flow store: {n_pairs} pairs, teacher = one cell right", flush=True)
            sources = [(features, flow, instances)]
            ck = {"train": tmp / "siamese" / "model.pt"}

            print(f"== 1. train_siamese (correlation head, freeze_encoder, schema defaults: batch {batch}, "
                  f"{section['correlation']['cells_per_pair']} cells/pair)", flush=True)
            _timed("train", dev, lambda: run_training(sources, section, backbone, 0, ck["train"],
                                                      tmp / "siamese" / "loss.png", progress=False),
                   batch, a.steps)

            print("== 2. self-training round from the previous checkpoint (start_from=)", flush=True)
            if start_from:
                ck["round2"] = tmp / "siamese" / "round2.pt"
                _timed("round 2", dev, lambda: run_training(sources, section, backbone, 1, ck["round2"],
                                                            tmp / "siamese" / "loss2.png", progress=False,
                                                            start_from=ck["train"]),
                       batch, a.steps)
            else:
                print("  skipped: this checkout's sopcorr.siamese.stage.run_training has no start_from argument",
                      flush=True)

            last = ck.get("round2", ck["train"])
            print(f"== 3. finetune_siamese (init_checkpoint={last.name}, train-split pairs)", flush=True)
            ck["finetune"] = tmp / "siamese" / "finetuned.pt"
            _timed("fine-tune", dev, lambda: run_training(sources, section, backbone, 0, ck["finetune"],
                                                          tmp / "siamese" / "loss_ft.png", progress=False,
                                                          init_checkpoint=last),
                   batch, a.steps)

            print(f"== the {dev.type}-trained checkpoints on the CPU", flush=True)
            _cpu_readout({k: v for k, v in ck.items()}, instances)
        except Exception:
            traceback.print_exc()
            failed = True
    print("gpu_rules: FAILED" if failed else "gpu_rules: OK", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
