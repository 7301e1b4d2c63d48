"""Throughput of Siamese training steps vs a bare forward+backward of the same network.

Prints pairs/s of (a) full training steps (augmentation on the device, mixed precision on
CUDA via autocast + GradScaler, AdamW step) and (b) a bare forward + backward of the network
(same precision, no augmentation, no optimiser), their ratio, and peak GPU memory.
Random images and flows: speed does not depend on the data. When the VGG16 ImageNet weights are
not on the machine, random VGG16 weights are used (the timing is the same; a note says so).

With no flags it picks the scale from the device: on CUDA the paper's VGG16 at 352 px, batch 16,
20 steps; on the CPU EfficientNet-Lite0 at 128 px, batch 4, 4 steps (well under two minutes on 2
cores; VGG16 at 352 px takes more than 7 minutes there). ``--paper`` asks for the paper's scale
on any device; any explicit flag wins over both.

    python benchmarks/bench_siamese.py                    # CPU: small network; CUDA: paper scale
    python benchmarks/bench_siamese.py --paper            # VGG16 at 352 px, batch 16, 20 steps
    python benchmarks/bench_siamese.py --device cpu --backbone efficientnet_lite0 --size 64 --batch 2 --steps 2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _cli import nonnegative_int, positive_int

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

#: (backbone, size, batch, steps, warmup) with no flags
PAPER_SCALE = ("vgg16", 352, 16, 20, 3)
CPU_SCALE = ("efficientnet_lite0", 128, 4, 4, 1)


def _build(spec, device):
    from sopcorr.errors import WeightsError
    from sopcorr.siamese.model import build_model

    try:
        return build_model(spec, device=device), "ImageNet"
    except WeightsError as exc:
        if spec.backbone != "vgg16":
            raise
        import torchvision

        from sopcorr.features import backbones

        print(f"note: {str(exc)[:100]}... -> timing with random VGG16 weights", flush=True)
        backbones._load_state_dict = lambda path, what: torchvision.models.vgg16(weights=None).state_dict()
        backbones._vgg16_weights_path = lambda weights: Path("random-vgg16")
        return build_model(spec, device=device), "random"


def _sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    ap.add_argument("--paper", action="store_true",
                    help="the paper's scale (vgg16, 352 px, batch 16, 20 steps) on any device")
    ap.add_argument("--backbone", default=None, help="default: vgg16 on CUDA or with --paper, else efficientnet_lite0")
    ap.add_argument("--size", type=positive_int, default=None, help="input px (default 352 / 128 on the CPU)")
    ap.add_argument("--batch", type=positive_int, default=None, help="pairs per step (default 16 / 4 on the CPU)")
    ap.add_argument("--steps", type=positive_int, default=None, help="timed steps (default 20 / 4 on the CPU)")
    ap.add_argument("--warmup", type=nonnegative_int, default=None, help="untimed steps (default 3 / 1 on the CPU)")
    ap.add_argument("--freeze-encoder", action="store_true", help="train only fusion + decoder")
    ap.add_argument("--threads", type=positive_int, default=None)
    ap.add_argument("--fuse-channels", type=positive_int, default=128)
    ap.add_argument("--decoder-channels", type=positive_int, default=64)
    a = ap.parse_args(argv)

    import torch

    from sopcorr.errors import SopcorrError
    from sopcorr.siamese.augment import augment_batch
    from sopcorr.siamese.model import ModelSpec, truncated_euclidean_loss
    from sopcorr.siamese.train import TrainConfig, lr_lambda, resolve_device

    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        dev = resolve_device(a.device)
    except SopcorrError as exc:
        ap.error(str(exc))
    scale = PAPER_SCALE if (a.paper or dev.type == "cuda") else CPU_SCALE
    for key, value in zip(("backbone", "size", "batch", "steps", "warmup"), scale):
        if getattr(a, key) is None:
            setattr(a, key, value)
    amp = dev.type == "cuda"
    torch.manual_seed(0)
    if amp:
        torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    try:
        model, weights = _build(ModelSpec(a.backbone, a.size, fuse_channels=a.fuse_channels,
                                          decoder_channels=a.decoder_channels), dev)
    except SopcorrError as exc:
        ap.error(str(exc))
    model.set_mode(True, a.freeze_encoder)
    params = list(model.trainable_parameters(a.freeze_encoder))
    print(f"device {dev} ({torch.cuda.get_device_name(dev) if amp else 'cpu'}), backbone {a.backbone} "
          f"({weights} weights), input {a.size}, batch {a.batch}, amp {amp}, encoder "
          f"{'frozen' if a.freeze_encoder else 'trained'}, {sum(p.numel() for p in params)/1e6:.1f}M trainable "
          f"params, built in {time.perf_counter() - t0:.1f}s", flush=True)
    cfg = TrainConfig(steps=a.steps + a.warmup, lr=1e-4)
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    B, S = a.batch, a.size
    src = torch.randn(B, 3, S, S, device=dev)
    tgt = torch.randn(B, 3, S, S, device=dev)
    flow = torch.randn(B, 2, S, S, device=dev) * 5
    valid = torch.rand(B, S, S, device=dev) > 0.3
    g = torch.Generator().manual_seed(0)

    def train_step():
        s2, t2, f2, v2, _ = augment_batch(src, tgt, flow, valid, g, 16.0, (0.9, 2.0))
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=amp):
            pred = model(s2, t2)
        loss = truncated_euclidean_loss(pred.float(), f2, v2)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        scaler.step(opt)
        scaler.update()
        sched.step()
        return loss

    def bare_step():
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=amp):
            pred = model(src, tgt)
        loss = truncated_euclidean_loss(pred.float(), flow, valid)
        loss.backward()
        for p in params:
            p.grad = None
        return loss

    results = {}
    for name, fn in (("bare forward+backward", bare_step), ("training step", train_step)):
        for _ in range(a.warmup):
            fn()
        _sync(dev)
        if amp:
            torch.cuda.reset_peak_memory_stats(dev)
        t = time.perf_counter()
        for _ in range(a.steps):
            loss = fn()
        _sync(dev)
        dt = time.perf_counter() - t
        results[name] = B * a.steps / dt
        mem = f", peak GPU memory {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB" if amp else ""
        print(f"{name:>22}: {results[name]:8.1f} pairs/s ({dt / a.steps * 1000:.1f} ms/step, "
              f"loss {float(loss.detach()):.3f}){mem}", flush=True)
    ratio = results["training step"] / results["bare forward+backward"]
    print(f"ratio training / bare = {ratio:.2f} (1.0 = no overhead from augmentation, optimiser, scaler)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
