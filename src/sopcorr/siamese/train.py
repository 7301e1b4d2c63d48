"""Training and fine-tuning of the Siamese flow network on pseudo-ground-truth flows.

* Optimiser AdamW; learning rate: linear warm-up over ``warmup`` steps, then cosine decay to
  ``min_lr_ratio * lr``.
* Step ``k`` draws its batch and its augmentation from a generator seeded with
  ``(seed, k)``, so a run resumed from a checkpoint takes exactly the same steps as an
  uninterrupted one (tested: identical weights).
* Checkpoints (``torch.save`` of a dict, written atomically): ``model`` (state dict), ``spec``
  (:class:`~sopcorr.siamese.model.ModelSpec`), ``optimizer``, ``scheduler``, ``scaler``,
  ``step``, ``config`` (the training settings), ``rng`` (torch / numpy / python / cuda states),
  ``history`` (per-step loss). A resumable state is written every ``checkpoint_every`` steps
  to ``state_path`` and picked up on the next start if its config matches; the final
  checkpoint goes to the output path and the state file is removed.
* Mixed precision on CUDA (``torch.autocast`` float16 + ``GradScaler``); float32 on the CPU.
* The encoder's batch-norm statistics stay frozen; with ``freeze_encoder`` its weights too.
"""
from __future__ import annotations

import json
import logging
import math
import random
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ..device import resolve_device
from ..errors import SopcorrError
from ..io import atomic_path, save_figure
from .augment import augment_batch
from .model import CheckpointError, ModelSpec, SiameseFlowNet, truncated_euclidean_loss, truncation_T2

log = logging.getLogger("sopcorr.siamese")


# --------------------------------------------------------------------------- settings


@dataclass
class TrainConfig:
    """Training settings (config section ``siamese``; fine-tuning uses finetune_* values).

    steps: optimiser steps; batch_size: pairs per step; lr, weight_decay: AdamW;
    warmup: warm-up steps (None: min(100, steps // 10)); min_lr_ratio: cosine floor;
    rotation_deg, scale_range: augmentation (rotation_deg 0 and scale_range (1, 1) disable it);
    augment: apply augmentation at all; checkpoint_every: steps between resumable states;
    seed: base seed; truncation: 'paper' (T^2 = long edge in pixels) or a fraction f (T = f x long edge);
    keypoint_weight: weight of the sparse keypoint term (used only when pairs carry keypoints);
    freeze_encoder: keep the encoder's weights fixed; grad_clip: max gradient norm (0: off).
    """

    steps: int = 150
    batch_size: int = 4
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup: int | None = None
    min_lr_ratio: float = 0.05
    rotation_deg: float = 16.0
    scale_range: tuple[float, float] = (0.9, 2.0)
    augment: bool = True
    checkpoint_every: int = 50
    seed: int = 0
    truncation: str | float = "paper"
    keypoint_weight: float = 1.0
    freeze_encoder: bool = True
    grad_clip: float = 10.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scale_range"] = list(self.scale_range)
        return d

    @property
    def warmup_steps(self) -> int:
        return self.warmup if self.warmup is not None else min(100, self.steps // 10)


def lr_lambda(cfg: TrainConfig):
    """Multiplier of the base lr at scheduler step ``k``: linear warm-up then cosine."""
    W, N, floor = cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio

    def f(k: int) -> float:
        if W > 0 and k < W:
            return (k + 1) / W
        t = (k - W) / max(1, N - W)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


# --------------------------------------------------------------------------- data


class PairSource(Protocol):
    """Training pairs at input size S. ``get(i)`` returns a dict with src, tgt (3,S,S) float
    (ImageNet-normalised), flow (2,S,S) float32 pixels, valid (S,S) bool and optionally
    kp_src, kp_tgt (K,2) float32 input pixels and kp_vis (K,) bool."""

    size: int

    def __len__(self) -> int: ...

    def get(self, i: int) -> dict: ...


@dataclass
class TensorPairs:
    """In-memory pairs: images (N,3,S,S), pairs (P,2) image indices, flows (P,2,S,S),
    valid (P,S,S); optional keypoints (N,K,3) input-pixel (x, y, visible) per image."""

    images: torch.Tensor
    pairs: torch.Tensor
    flows: torch.Tensor
    valid: torch.Tensor
    keypoints: torch.Tensor | None = None
    size: int = field(init=False)

    def __post_init__(self):
        self.size = int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.pairs.shape[0])

    def get(self, i: int) -> dict:
        a, b = (int(v) for v in self.pairs[i])
        out = dict(src=self.images[a].float(), tgt=self.images[b].float(), flow=self.flows[i].float(),
                   valid=self.valid[i].bool())
        if self.keypoints is not None:
            ka, kb = self.keypoints[a], self.keypoints[b]
            out.update(kp_src=ka[:, :2].float(), kp_tgt=kb[:, :2].float(),
                       kp_vis=(ka[:, 2] > 0) & (kb[:, 2] > 0) & torch.isfinite(ka[:, :2]).all(1)
                       & torch.isfinite(kb[:, :2]).all(1))
        return out


def _collate(items: list[dict], device) -> dict:
    out = {k: torch.stack([it[k] for it in items]).to(device) for k in ("src", "tgt", "flow", "valid")}
    if all("kp_src" in it for it in items):
        K = max(it["kp_src"].shape[0] for it in items)
        if K > 0:
            B = len(items)
            ks = torch.zeros(B, K, 2)
            kt = torch.zeros(B, K, 2)
            kv = torch.zeros(B, K, dtype=torch.bool)
            for j, it in enumerate(items):
                n = it["kp_src"].shape[0]
                ks[j, :n] = torch.nan_to_num(it["kp_src"])
                kt[j, :n] = torch.nan_to_num(it["kp_tgt"])
                kv[j, :n] = it["kp_vis"]
            out["kp"] = (ks.to(device), kt.to(device), kv.to(device))
    return out


def keypoint_loss(flow: torch.Tensor, kp_src: torch.Tensor, kp_tgt: torch.Tensor, vis: torch.Tensor,
                  T2: float) -> torch.Tensor:
    """Sparse term: flow (B,2,S,S) sampled bilinearly at kp_src (B,K,2) should equal kp_tgt - kp_src;
    truncated squared error averaged over visible keypoints vis (B,K)."""
    S = flow.shape[-1]
    g = ((2 * kp_src + 1) / S - 1)[:, :, None, :].to(flow.dtype)  # (B,K,1,2)
    f = F.grid_sample(flow, g, mode="bilinear", align_corners=False)[..., 0].permute(0, 2, 1)  # (B,K,2)
    d2 = ((f.float() - (kp_tgt - kp_src).float()) ** 2).sum(-1).clamp(max=float(T2))
    v = vis.float()
    return (d2 * v).sum() / v.sum().clamp(min=1.0)


# --------------------------------------------------------------------------- checkpoints


def _rng_state() -> dict:
    st = dict(torch=torch.get_rng_state(), numpy=np.random.get_state(), python=random.getstate())
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(path: str | Path, obj: dict) -> None:
    """``torch.save`` via a temporary file renamed into place."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint dict; CheckpointError naming the file when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ck, dict) or "model" not in ck or "spec" not in ck:
        raise CheckpointError(f"{path}: not a sopcorr Siamese checkpoint (no 'model'/'spec' entries)")
    return ck


# --------------------------------------------------------------------------- loop


def step_generator(seed: int, step: int, salt: str = "") -> torch.Generator:
    """The generator of step ``step``: batch choice and augmentation of that step."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step) * 7919 + zlib.crc32(salt.encode())) % (2**63))


def train(model: SiameseFlowNet, data: PairSource, cfg: TrainConfig, out_path: str | Path,
          state_path: str | Path | None = None, device="auto", resume: bool = True, progress: bool = True,
          stop_after: int | None = None, extra: dict | None = None, salt: str = "train") -> list[float]:
    """Train ``model`` on ``data`` for ``cfg.steps`` steps; write the final checkpoint to
    ``out_path``. Returns the per-step losses (whole run, resumed steps included).

    state_path: resumable state (default ``<out_path>.state.pt``); resume: continue from it if
    its config matches. stop_after: stop (after checkpointing) once this step is reached --
    simulates a kill in tests. extra: stored in the checkpoint (e.g. the data fingerprint).
    """
    dev = resolve_device(device) if isinstance(device, str) else device
    out_path = Path(out_path)
    state_path = Path(state_path) if state_path else out_path.with_name(out_path.name + ".state.pt")
    if len(data) == 0:
        raise SopcorrError("siamese: no training pairs (check the flow stores and the split)")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % (2**32))
    random.seed(cfg.seed)
    model.to(dev).set_mode(True, cfg.freeze_encoder)
    params = [p for p in model.trainable_parameters(cfg.freeze_encoder)]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    cfg_record = dict(train=cfg.to_dict(), spec=model.spec.to_dict() if model.spec else None,
                      extra=extra or {}, salt=salt)
    start, history = 0, []
    if resume and state_path.is_file():
        st = load_checkpoint(state_path)
        if json.dumps(st.get("config"), sort_keys=True, default=str) == json.dumps(cfg_record, sort_keys=True, default=str):
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            scaler.load_state_dict(st["scaler"])
            start, history = int(st["step"]), list(st["history"])
            _set_rng_state(st["rng"])
            log.info("resuming from %s at step %d", state_path, start)
        else:
            log.warning("ignoring %s: it was written with other settings", state_path)

    def snapshot(step: int) -> dict:
        return dict(model=model.state_dict(), spec=model.spec.to_dict() if model.spec else None,
                    optimizer=opt.state_dict(), scheduler=sched.state_dict(), scaler=scaler.state_dict(),
                    step=step, config=cfg_record, rng=_rng_state(), history=history)

    T2 = truncation_T2(cfg.truncation, data.size)
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=start, disable=not progress, desc=f"siamese {salt}",
               mininterval=2.0, dynamic_ncols=True)
    n = len(data)
    for step in range(start, cfg.steps):
        g = step_generator(cfg.seed, step, salt)
        idx = torch.randint(n, (cfg.batch_size,), generator=g).tolist()
        b = _collate([data.get(i) for i in idx], dev)
        kp = b.get("kp")
        if cfg.augment:
            src, tgt, flow, valid, kp = augment_batch(b["src"], b["tgt"], b["flow"], b["valid"], g,
                                                      cfg.rotation_deg, cfg.scale_range, kp)
        else:
            src, tgt, flow, valid = b["src"], b["tgt"], b["flow"], b["valid"]
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
            pred = model(src, tgt)
        loss = truncated_euclidean_loss(pred.float(), flow, valid, T2=T2)
        if kp is not None and cfg.keypoint_weight > 0:
            loss = loss + cfg.keypoint_weight * keypoint_loss(pred.float(), *kp, T2=T2)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        sched.step()
        history.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{history[-1]:.3f}", refresh=False)
        done = step + 1
        if done < cfg.steps and (done % cfg.checkpoint_every == 0 or done == stop_after):
            save_checkpoint(state_path, snapshot(done))
        if stop_after is not None and done >= stop_after and done < cfg.steps:
            bar.close()
            return history
    bar.close()
    save_checkpoint(out_path, snapshot(cfg.steps))
    state_path.unlink(missing_ok=True)
    return history


def plot_loss(history: list[float], path: str | Path, title: str = "Siamese training loss") -> None:
    """Loss curve (per step and a moving average) saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    h = np.asarray(history, dtype=float)
    ax.plot(np.arange(1, len(h) + 1), h, lw=0.8, alpha=0.5, label="per step")
    if len(h) >= 5:
        w = max(2, len(h) // 20)
        ma = np.convolve(h, np.ones(w) / w, mode="valid")
        ax.plot(np.arange(w, len(h) + 1), ma, lw=1.8, label=f"mean of {w}")
    ax.set_xlabel("step")
    ax.set_ylabel("truncated Euclidean loss / valid pixel")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def model_from_checkpoint(ck: dict, device="cpu", path: str | Path = "<checkpoint>") -> SiameseFlowNet:
    """Rebuild the network recorded in a checkpoint dict and load its weights."""
    from .model import build_model

    spec = ModelSpec.from_dict(ck["spec"])
    model = build_model(spec, device=device, pretrained=False)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the recorded network ({str(exc).splitlines()[0]})") from None
    return model


# --------------------------------------------------------------------------- pipeline data


def _pair_ids(store) -> list[tuple[str, str]]:
    """(source id, target id) of every pair of a flow store."""
    for attr in ("pair_ids",):
        v = getattr(store, attr, None)
        if v is not None:
            v = v() if callable(v) else v
            return [(str(a), str(b)) for a, b in v]
    raise SopcorrError(f"{store}: flow store exposes no pair ids")


class StorePairs:
    """Training pairs from the pipeline's artifacts: per category a pseudo-ground-truth flow
    store (``flow/<cat>.zarr``) and the category's ``data/<cat>/instances.json``.

    Images are letterboxed to ``size`` and normalised with ``mean``/``std`` once and cached
    as float16; flows are upsampled to the input resolution on
    first use (``FlowStore.upsampled``) and cached while the cache stays under ``cache_bytes``.
    split: keep only pairs whose both images have this split (fine-tuning: "train").
    keypoints: also return the images' keypoints (input pixels) for sparse supervision.
    """

    def __init__(self, sources: list[tuple[str | Path, str | Path]], size: int, mean, std,
                 split: str | None = None, keypoints: bool = False, cache_bytes: int = 2 << 30):
        from ..data.generic import load_dataset
        from ..flow.pseudo import FlowStore

        self.size, self.mean, self.std = int(size), mean, std
        self.keypoints = keypoints
        self.items: list[tuple[int, int, str, str]] = []  # (store index, pair index, src id, tgt id)
        self.stores, self.datasets, self.kp_names = [], [], []
        for si, (zpath, ipath) in enumerate(sources):
            ds = load_dataset(ipath, check_images=False)
            store = FlowStore.open(zpath)
            insts = ds.by_id()
            cat = next(iter(ds.categories)) if ds.categories else None
            self.stores.append(store)
            self.datasets.append(ds)
            self.kp_names.append(list(ds.categories[cat].keypoints) if cat else [])
            for pi, (a, b) in enumerate(_pair_ids(store)):
                if a not in insts or b not in insts:
                    raise SopcorrError(f"{zpath}: pair ({a}, {b}) names an instance missing from {ipath}")
                if split is not None and (insts[a].split != split or insts[b].split != split):
                    continue
                self.items.append((si, pi, a, b))
        self._img: dict[tuple[int, str], tuple[torch.Tensor, object]] = {}
        self._flow: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._cache_left = int(cache_bytes)

    def __len__(self) -> int:
        return len(self.items)

    def fingerprint(self) -> dict:
        """What identifies the training data (stored in checkpoints so a resume sees the same)."""
        return dict(n_pairs=len(self.items), size=self.size,
                    first=list(self.items[0][2:]) if self.items else None,
                    last=list(self.items[-1][2:]) if self.items else None)

    def _image(self, si: int, iid: str):
        key = (si, iid)
        if key not in self._img:
            from ..data.generic import read_image
            from ..features.extract import preprocess

            ds = self.datasets[si]
            inst = ds.by_id()[iid]
            x, lb = preprocess(read_image(ds.path(inst.image)), self.size, self.mean, self.std)
            self._img[key] = (x.half(), lb)
        return self._img[key]

    def _keypoints(self, si: int, iid: str, lb) -> torch.Tensor:
        inst = self.datasets[si].by_id()[iid]
        arr = inst.keypoint_array(self.kp_names[si])  # (K, 3) image coords, nan when absent
        xy = lb.image_to_input(arr[:, :2])
        return torch.from_numpy(np.concatenate([xy, arr[:, 2:3]], 1)).float()

    def get(self, i: int) -> dict:
        si, pi, a, b = self.items[i]
        xa, lba = self._image(si, a)
        xb, lbb = self._image(si, b)
        if i in self._flow:
            flow, valid = self._flow[i]
        else:
            f, v = self.stores[si].upsampled(pi, self.size)
            flow = torch.from_numpy(np.ascontiguousarray(np.asarray(f, np.float32).transpose(2, 0, 1)))
            valid = torch.from_numpy(np.asarray(v, bool))
            flow = torch.nan_to_num(flow)
            nbytes = flow.numel() * 4 + valid.numel()
            if nbytes <= self._cache_left:
                self._flow[i] = (flow, valid)
                self._cache_left -= nbytes
        out = dict(src=xa.float(), tgt=xb.float(), flow=flow, valid=valid)
        if self.keypoints:
            ka, kb = self._keypoints(si, a, lba), self._keypoints(si, b, lbb)
            out.update(kp_src=ka[:, :2], kp_tgt=kb[:, :2],
                       kp_vis=(ka[:, 2] > 0) & (kb[:, 2] > 0) & torch.isfinite(ka[:, :2]).all(1)
                       & torch.isfinite(kb[:, :2]).all(1))
        return out


# --------------------------------------------------------------------------- from the config


def train_config(section: dict, seed: int, finetune: bool = False) -> TrainConfig:
    """TrainConfig from the config section ``siamese`` (``finetune``: the finetune_* values)."""
    steps = int(section["finetune_steps"] if finetune else section["steps"])
    return TrainConfig(
        steps=steps, batch_size=int(section["batch_size"]),
        lr=float(section["finetune_lr"] if finetune else section["lr"]),
        weight_decay=float(section["weight_decay"]), warmup=section.get("warmup"),
        rotation_deg=float(section["rotation_deg"]), scale_range=tuple(float(v) for v in section["scale_range"]),
        checkpoint_every=int(section["checkpoint_every"]), seed=int(seed),
        truncation=section.get("truncation", "paper"),
        keypoint_weight=float(section.get("keypoint_weight", 1.0)) if (finetune and section.get("keypoint_supervision")) else 0.0,
        freeze_encoder=bool(section["freeze_encoder"]), grad_clip=float(section.get("grad_clip", 10.0)))


def model_spec(section: dict, backbone: dict) -> ModelSpec:
    """ModelSpec from the config sections ``siamese`` and ``backbone``."""
    return ModelSpec(backbone=backbone["name"], input_size=int(section["input_size"]),
                     encoder_layers=section.get("encoder_layers"),
                     fuse_channels=int(section.get("fuse_channels", 128)),
                     decoder_channels=int(section.get("decoder_channels", 64)))


def run_training(sources: list[tuple[str | Path, str | Path]], section: dict, backbone: dict, seed: int,
                 out_path: str | Path, loss_png: str | Path | None = None, init_checkpoint: str | Path | None = None,
                 progress: bool = True) -> list[float]:
    """The ``train_siamese`` / ``finetune_siamese`` step.

    sources: per category (flow store, instances.json). Without ``init_checkpoint``: train a new
    network (backbone from ``backbone``, ImageNet weights) on every pair. With it: fine-tune
    that checkpoint on the pairs whose both images are in the training split, with
    finetune_steps / finetune_lr and (if ``keypoint_supervision``) the sparse keypoint term.
    Writes the checkpoint to ``out_path`` and the loss curve to ``loss_png``."""
    from .model import build_model, normalisation

    finetune = init_checkpoint is not None
    cfg = train_config(section, seed, finetune=finetune)
    dev = resolve_device(section.get("device", "auto"))
    if finetune:
        ck = load_checkpoint(init_checkpoint)
        spec = ModelSpec.from_dict(ck["spec"])
        if spec.backbone != backbone["name"]:
            raise CheckpointError(f"{init_checkpoint}: trained with backbone '{spec.backbone}', "
                                  f"the config asks for '{backbone['name']}'")
        model = model_from_checkpoint(ck, device=dev, path=init_checkpoint)
    else:
        spec = model_spec(section, backbone)
        torch.manual_seed(cfg.seed)
        from .model import build_model

        model = build_model(spec, device=dev, weights=backbone.get("weights"))
    mean, std = normalisation(model.encoder)
    data = StorePairs(sources, spec.input_size, mean, std, split="train" if finetune else None,
                      keypoints=finetune and cfg.keypoint_weight > 0)
    log.info("%s: %d pairs from %d categories, %d steps of %d pairs, device %s, encoder %s",
             "fine-tuning" if finetune else "training", len(data), len(sources), cfg.steps, cfg.batch_size,
             dev, "frozen" if cfg.freeze_encoder else "trained")
    if cfg.steps == 0 or (finetune and len(data) == 0):
        if finetune and len(data) == 0:
            log.warning("no training-split pairs: the fine-tuned checkpoint is the trained one")
        history: list[float] = []
        save_checkpoint(out_path, dict(model=model.state_dict(), spec=spec.to_dict(), step=0,
                                       config=dict(train=cfg.to_dict()), history=history))
    else:
        history = train(model, data, cfg, out_path, device=dev, progress=progress,
                        extra=dict(data=data.fingerprint(), init=str(init_checkpoint) if finetune else None),
                        salt="finetune" if finetune else "train")
    if loss_png is not None:
        plot_loss(history, loss_png, title="Siamese fine-tuning loss" if finetune else "Siamese training loss")
    return history
