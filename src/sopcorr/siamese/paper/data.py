"""Training pairs of the paper's network (``architecture: paper``): images letterboxed at the
Siamese input size and the teacher's flows upsampled to it.

:class:`StorePairs` reads the pipeline's artifacts (per category the flow store and the
prepared instances, :mod:`sopcorr.siamese.data`); any object with ``size``, ``len()`` and
``get(i)`` (:class:`PairSource`) serves the training step as well. :func:`collate` stacks
items into a batch on the training device.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..data import open_category


class PairSource(Protocol):
    """Training pairs at input size S. ``get(i)`` returns a dict with src, tgt (3,S,S) float
    (ImageNet-normalised), flow (2,S,S) float32 pixels, valid (S,S) bool and optionally
    kp_src, kp_tgt (K,2) float32 input pixels and kp_vis (K,) bool."""

    size: int

    def __len__(self) -> int: ...

    def get(self, i: int) -> dict: ...


def keypoint_pair(ka: torch.Tensor, kb: torch.Tensor) -> dict:
    """The keypoint entries of an item from both images' (K, 3) input-pixel (x, y, visible):
    kp_src, kp_tgt (K, 2) and kp_vis (K,) (visible and finite in both)."""
    return dict(kp_src=ka[:, :2].float(), kp_tgt=kb[:, :2].float(),
                kp_vis=(ka[:, 2] > 0) & (kb[:, 2] > 0) & torch.isfinite(ka[:, :2]).all(1)
                & torch.isfinite(kb[:, :2]).all(1))


def collate(items: list[dict], device) -> dict:
    """Items of a :class:`PairSource` -> a batch on ``device``: src, tgt (B,3,S,S), flow
    (B,2,S,S), valid (B,S,S) and, when every item has keypoints, kp = (src (B,K,2), tgt
    (B,K,2), visible (B,K)) padded to the most keypoints."""
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


class StorePairs:
    """Training pairs from the pipeline's artifacts: per category a pseudo-ground-truth flow
    store (``flow/<variant>/<cat>.zarr``) and the category's ``data/<cat>/instances.json``.

    Images are letterboxed to ``size`` and normalised with ``mean``/``std`` once and cached
    as float16; flows are upsampled to the input resolution on
    first use (``FlowStore.upsampled``) and cached while the cache stays under ``cache_bytes``.
    split: keep only pairs whose both images have this split (fine-tuning: "train").
    keypoints: also return the images' keypoints (input pixels) for sparse supervision.
    """

    def __init__(self, sources: list[tuple[str | Path, str | Path]], size: int, mean, std,
                 split: str | None = None, keypoints: bool = False, cache_bytes: int = 2 << 30):
        self.size, self.mean, self.std = int(size), mean, std
        self.keypoints = keypoints
        self.items: list[tuple[int, int, str, str]] = []  # (category index, pair index, src id, tgt id)
        self.categories = []
        for si, (zpath, ipath) in enumerate(sources):
            cat = open_category(zpath, ipath)
            self.categories.append(cat)
            for pi, (a, b) in enumerate(cat.pair_ids()):
                if cat.in_split([a, b], split).all():
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
            from ...data.generic import read_image
            from ...features.extract import preprocess

            cat = self.categories[si]
            x, lb = preprocess(read_image(cat.dataset.path(cat.instances[iid].image)), self.size, self.mean, self.std)
            self._img[key] = (x.half(), lb)
        return self._img[key]

    def _keypoints(self, si: int, iid: str, lb) -> torch.Tensor:
        arr = self.categories[si].keypoints([iid])[0]  # (K, 3) image coords, nan when absent
        xy = lb.image_to_input(arr[:, :2])
        return torch.from_numpy(np.concatenate([xy, arr[:, 2:3]], 1)).float()

    def get(self, i: int) -> dict:
        si, pi, a, b = self.items[i]
        xa, lba = self._image(si, a)
        xb, lbb = self._image(si, b)
        if i in self._flow:
            flow, valid = self._flow[i]
        else:
            f, v = self.categories[si].flow.upsampled(pi, self.size)
            flow = torch.from_numpy(np.ascontiguousarray(np.asarray(f, np.float32).transpose(2, 0, 1)))
            valid = torch.from_numpy(np.asarray(v, bool))
            flow = torch.nan_to_num(flow)
            nbytes = flow.numel() * 4 + valid.numel()
            if nbytes <= self._cache_left:
                self._flow[i] = (flow, valid)
                self._cache_left -= nbytes
        out = dict(src=xa.float(), tgt=xb.float(), flow=flow, valid=valid)
        if self.keypoints:
            out.update(keypoint_pair(self._keypoints(si, a, lba), self._keypoints(si, b, lbb)))
        return out
