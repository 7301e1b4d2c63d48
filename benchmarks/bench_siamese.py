"""Throughput of Siamese training steps vs a bare forward+backward of the same network.

Prints pairs/s of (a) full training steps (augmentation on the device, mixed precision on
CUDA via autocast + GradScaler, AdamW step) and (b) a bare forward + backward of the network
(same precision, no augmentation, no optimiser), their ratio, and peak GPU memory.
Random images and flows: speed does not depend on the data. When the VGG16 ImageNet weights are
not on the machine, random VGG16 weights are used (the timing is the same; a note says so).

``--architecture correlation`` (default) times the correlation network end to end from images
(``--freeze-encoder``: its head on encoder grids, as on the CPU): a training step is
``sopcorr.siamese.correlation.train``'s (batch on the device, joint flips, dense InfoNCE + read-out flow loss on
``--cells`` source cells per pair, AdamW); the bare step is encoder + head + correlation +
InfoNCE forward and backward. ``--architecture paper`` times the paper's flow network at
``--size`` (its own input size).

    python benchmarks/bench_siamese.py --device cuda --backbone vgg16 --size 704 --layers conv5_3 --batch 8 --steps 20
    python benchmarks/bench_siamese.py --architecture paper --device cuda --backbone vgg16 --size 352 --batch 16
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


def _with_random_vgg16(fn, backbone):
    """fn() with the VGG16 ImageNet weights replaced by random ones when they are absent."""
    from sopcorr.errors import WeightsError

    try:
        return fn(), "ImageNet"
    except WeightsError as exc:
        if backbone != "vgg16":
            raise
        import torchvision

        from sopcorr.features import backbones

        print(f"note: {str(exc)[:100]}... -> timing with random VGG16 weights", flush=True)
        backbones._load_state_dict = lambda path, what: torchvision.models.vgg16(weights=None).state_dict()
        backbones._vgg16_weights_path = lambda weights: Path("random-vgg16")
        return fn(), "random"


def correlation_bench(a, dev) -> int:
    """Training step vs bare forward+backward of the correlation network (module docstring)."""
    import torch

    from sopcorr.features.registry import get_spec
    from sopcorr.siamese.correlation.data import flip_batch
    from sopcorr.siamese.correlation.losses import dense_infonce, sample_cells
    from sopcorr.siamese.correlation.net import NetworkSpec, build_network
    from sopcorr.siamese.correlation.train import CorrelationSettings, network_loss
    from sopcorr.siamese.loop import lr_lambda
    from sopcorr.siamese.optim import AdamW, LambdaSchedule
    from sopcorr.siamese.settings import truncation_T2

    amp = dev.type == "cuda"
    bspec = get_spec(a.backbone)
    layers = a.layers.split(",") if a.layers else list(bspec.default_layers)
    stride = min(bspec.layer(n).stride for n in layers)
    channels = sum(bspec.layer(n).channels for n in layers)
    spec = NetworkSpec(a.backbone, a.size, tuple(layers), a.backbone == "vgg16", channels, stride,
                       hidden_channels=a.hidden, descriptor_dim=a.dim)
    freeze = a.freeze_encoder
    t0 = time.perf_counter()
    model, weights = _with_random_vgg16(lambda: build_network(spec, device=dev, with_encoder=True), a.backbone)
    model.set_mode(True, freeze)
    params = list(model.trainable_parameters(freeze))
    H = a.size // stride
    print(f"device {dev} ({torch.cuda.get_device_name(dev) if amp else 'cpu'}), correlation network, backbone "
          f"{a.backbone} {layers} ({weights} weights), input {a.size} -> {H}x{H}x{channels} grid, batch {a.batch}, "
          f"cells/pair {a.cells or H * H}, amp {amp}, encoder {'frozen (head on grids)' if freeze else 'trained'}, "
          f"{sum(p.numel() for p in params)/1e6:.2f}M trainable params, built in {time.perf_counter() - t0:.1f}s",
          flush=True)
    cfg = CorrelationSettings(steps=a.steps + a.warmup, lr=1e-4, cells_per_pair=a.cells, freeze_encoder=freeze,
                              flow_weight=a.flow_weight)
    opt = AdamW(params, lr=cfg.lr)
    sched = LambdaSchedule(opt, lr_lambda(cfg))
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    B, S = a.batch, a.size
    g = torch.Generator().manual_seed(0)
    imgs = torch.randn(2 * B, 3, S, S, device=dev)
    with torch.no_grad():
        grids = model.encode(imgs) if freeze else None
    cpu = dict(valid_src=torch.rand(B, H, H, generator=g) > 0.2, valid_tgt=torch.rand(B, H, H, generator=g) > 0.2,
               target=torch.rand(B, H, H, 2, generator=g) * (H - 1), weight=torch.rand(B, H, H, generator=g))
    T2 = truncation_T2("paper", S)

    def batch():  # what GridPairs.batch hands over: host tensors moved to the device
        b = {k: v.to(dev, non_blocking=True) for k, v in cpu.items()}
        if freeze:
            b["src"], b["tgt"] = grids[:B], grids[B:]
        else:
            b["src"], b["tgt"] = imgs[:B], imgs[B:]
        return b

    def train_step():
        b = batch()
        which = torch.rand(B, generator=g) < 0.5
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=amp):
            if not freeze:
                x = model.encode(torch.cat([b["src"], b["tgt"]]))
                b["src"], b["tgt"] = x[:B], x[B:]
            loss = network_loss(model, flip_batch(b, which), cfg, T2, g)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        scaler.step(opt)
        scaler.update()
        sched.step()
        return loss

    b0 = batch()
    cells0 = sample_cells(b0["weight"].flatten(1), a.cells, g)
    tgt0 = b0["target"].flatten(1, 2).gather(1, cells0[..., None].expand(-1, -1, 2))
    w0 = b0["weight"].flatten(1).gather(1, cells0)

    def bare_step():
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=amp):
            x = torch.cat([b0["src"], b0["tgt"]]) if freeze else model.encode(imgs)
            d = model.describe(x).flatten(2).transpose(1, 2)
            loss, _ = dense_infonce(d[:B], d[B:], cells0, tgt0, w0, (H, H), (H, H), b0["valid_src"].flatten(1),
                                    b0["valid_tgt"].flatten(1), spec.temperature, 1.0, True)
        loss.backward()
        for p in params:
            p.grad = None
        return loss

    return _time(a, dev, B, bare_step, train_step)


def _time(a, dev, B, bare_step, train_step) -> int:
    import torch

    amp = dev.type == "cuda"
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
    print(f"ratio training / bare = {ratio:.2f} (1.0 = no overhead from batching, augmentation, optimiser, scaler)")
    return 0


def _build(spec, device):
    from sopcorr.siamese.paper.net import build_model

    return _with_random_vgg16(lambda: build_model(spec, device=device), spec.backbone)


def _sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--architecture", choices=["correlation", "paper"], default="correlation")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--paper", action="store_true",
                    help="paper scale (VGG16 at 352 px, batch 16, 20 steps) on any device (default on CUDA)")
    ap.add_argument("--backbone", default=None, help="default: the scale's (vgg16 paper, efficientnet_lite0 CPU)")
    ap.add_argument("--size", type=positive_int, default=None)
    ap.add_argument("--batch", type=positive_int, default=None)
    ap.add_argument("--steps", type=positive_int, default=None)
    ap.add_argument("--warmup", type=nonnegative_int, default=None)
    ap.add_argument("--freeze-encoder", action="store_true", help="train only fusion + decoder")
    ap.add_argument("--threads", type=positive_int, default=None)
    ap.add_argument("--fuse-channels", type=positive_int, default=128)
    ap.add_argument("--decoder-channels", type=positive_int, default=64)
    ap.add_argument("--layers", default=None, help="correlation: comma list of encoder layers (default: the backbone's)")
    ap.add_argument("--hidden", type=nonnegative_int, default=256, help="correlation: head width")
    ap.add_argument("--dim", type=positive_int, default=128, help="correlation: descriptor dimension")
    ap.add_argument("--cells", type=positive_int, default=None, help="correlation: source cells per pair in the loss (default: all)")
    ap.add_argument("--flow-weight", type=float, default=1.0,
                    help="correlation: weight of the read-out flow loss in the training step (0: InfoNCE only, as the bare step)")
    a = ap.parse_args(argv)

    import torch

    from sopcorr.device import resolve_device
    from sopcorr.errors import SopcorrError
    from sopcorr.siamese.loop import lr_lambda
    from sopcorr.siamese.optim import AdamW, LambdaSchedule
    from sopcorr.siamese.paper.augment import augment_batch
    from sopcorr.siamese.paper.net import ModelSpec, truncated_euclidean_loss
    from sopcorr.siamese.paper.train import PaperSettings

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
    if a.architecture == "correlation":
        return correlation_bench(a, dev)
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
    cfg = PaperSettings(steps=a.steps + a.warmup, lr=1e-4)
    opt = AdamW(params, lr=cfg.lr)
    sched = LambdaSchedule(opt, lr_lambda(cfg))
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

    return _time(a, dev, B, bare_step, train_step)


if __name__ == "__main__":
    sys.exit(main())
