"""Throughput of Siamese training steps vs a bare forward+backward of the same network.

Prints pairs/s of (a) full training steps (augmentation on the device, mixed precision on
CUDA via autocast + GradScaler, AdamW step) and (b) a bare forward + backward of the network
(same precision, no augmentation, no optimiser), their ratio, and peak GPU memory.
Random images and flows: speed does not depend on the data. When the VGG16 ImageNet weights are
not on the machine, random VGG16 weights are used (the timing is the same; a note says so).

    python benchmarks/bench_siamese.py --device cuda --backbone vgg16 --size 352 --batch 16 --steps 20
    python benchmarks/bench_siamese.py --device cpu --backbone efficientnet_lite0 --size 64 --batch 2 --steps 2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from sopcorr.errors import WeightsError  # noqa: E402
from sopcorr.siamese.augment import augment_batch  # noqa: E402
from sopcorr.siamese.model import ModelSpec, build_model, truncated_euclidean_loss  # noqa: E402
from sopcorr.siamese.train import lr_lambda, resolve_device, TrainConfig  # noqa: E402


def _build(spec: ModelSpec, device):
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
    if dev.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--backbone", default="vgg16")
    ap.add_argument("--size", type=int, default=352)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--freeze-encoder", action="store_true", help="train only fusion + decoder")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--fuse-channels", type=int, default=128)
    ap.add_argument("--decoder-channels", type=int, default=64)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = resolve_device(a.device)
    amp = dev.type == "cuda"
    torch.manual_seed(0)
    if amp:
        torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    model, weights = _build(ModelSpec(a.backbone, a.size, fuse_channels=a.fuse_channels,
                                      decoder_channels=a.decoder_channels), dev)
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
