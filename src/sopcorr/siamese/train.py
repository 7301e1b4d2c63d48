"""Training and fine-tuning of the paper's Siamese flow network (``architecture: paper``) on
pseudo-ground-truth flows at the Siamese input size.

* Data: :class:`StorePairs` (the pipeline's flow stores and images, letterboxed and cached) or
  :class:`TensorPairs` (in memory); each pair is augmented with random similarities
  (:mod:`sopcorr.siamese.augment`).
* Loss: the truncated Euclidean flow loss (paper Eq. 10), plus the sparse keypoint term when the
  pairs carry keypoints (fine-tuning with keypoint supervision).
* Optimiser, schedule, determinism and resumable checkpoints: :mod:`sopcorr.siamese.loop`;
  checkpoint files: :mod:`sopcorr.siamese.checkpoint`; settings: :mod:`sopcorr.siamese.settings`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ..device import resolve_device
from ..errors import SopcorrError
from .augment import augment_batch
from .checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from .loop import lr_lambda, resolve_device, run_loop, step_generator  # noqa: F401 (re-exported)
from .model import CheckpointError, ModelSpec, SiameseFlowNet, truncated_euclidean_loss, truncation_T2
from .plots import plot_loss
from .settings import TrainConfig, model_spec, train_config

log = logging.getLogger("sopcorr.siamese")


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


# --------------------------------------------------------------------------- loop


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
    if len(data) == 0:
        raise SopcorrError("siamese: no training pairs (check the flow stores and the split)")
    model.to(dev).set_mode(True, cfg.freeze_encoder)
    use_amp = dev.type == "cuda"
    T2 = truncation_T2(cfg.truncation, data.size)
    n = len(data)

    def step_loss(step: int, g: torch.Generator) -> torch.Tensor:
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
        return loss

    spec = model.spec.to_dict() if model.spec else None
    record = dict(train=cfg.to_dict(), spec=spec, extra=extra or {}, salt=salt)
    return run_loop(model, list(model.trainable_parameters(cfg.freeze_encoder)), step_loss, cfg, out_path, record,
                    spec, dev, state_path=state_path, resume=resume, progress=progress, stop_after=stop_after,
                    salt=salt)


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


# --------------------------------------------------------------------------- the pipeline step


def run_paper_training(sources: list[tuple[str | Path, str | Path]], section: dict, backbone: dict, seed: int,
                       out_path: str | Path, loss_png: str | Path | None = None,
                       init_checkpoint: str | Path | None = None, progress: bool = True) -> list[float]:
    """The ``train_siamese`` / ``finetune_siamese`` step of ``architecture: paper``.

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
