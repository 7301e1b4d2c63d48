"""Training pairs of the correlation network (``architecture: correlation``) on cached encoder
grids, and their augmentation.

The feature stage's stores (``features/<cat>.zarr``, (N, H, W, C) float16) already are the frozen
encoder's output at the features' input size, so the network's head trains on them directly:
no image is decoded and no backbone runs during training. The teacher is a flow store
(``flow/<variant>/<cat>.zarr``, :class:`~sopcorr.flow.pseudo.FlowStore`): per pair, target
image coordinates per source cell, a validity mask (forward-backward consistent) and a score.
They become **target cells** (continuous (col, row) on the target's grid) and **weights**
(the teacher's confidence ``clip(score, 0, 1)`` where valid, else 0).

:class:`GridPairs` holds every category's grids and pairs in memory (a few MB per category) and
serves batches; :func:`flip_batch` flips both grids of a pair and the teacher's targets jointly
(left-right, within each image's valid extent so the letterbox stays top-left). End to end
(``freeze_encoder: false``) the images are served instead of the grids and the encoder's output
goes through the same :func:`flip_batch`.

Shapes in a batch: src, tgt (B, C, H, W) grids (or (B, 3, S, S) images); valid_src, valid_tgt
(B, H, W) bool; target (B, H, W, 2) float32 target cells; weight (B, H, W) float32.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ...errors import DatasetError, SopcorrError
from ..data import open_category

log = logging.getLogger("sopcorr.siamese")


@dataclass
class Teacher:
    """Pseudo ground truth of one category on its feature grids.

    pairs (P, 2) int64 image indices (feature store order); target (P, H, W, 2) float32 target
    cells (col, row); weight (P, H, W) float32 (0 where the teacher has no match)."""

    pairs: np.ndarray
    target: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.pairs)

    def subset(self, keep: np.ndarray) -> "Teacher":
        keep = np.asarray(keep)
        return Teacher(self.pairs[keep], self.target[keep], self.weight[keep])


def teacher_from_arrays(pairs, target_xy: np.ndarray, valid: np.ndarray, score: np.ndarray, grids) -> Teacher:
    """Teacher from a flow store's arrays. pairs (P, 2) image indices; target_xy (P, H, W, 2)
    target image coordinates; valid (P, H, W); score (P, H, W); grids: per image its
    :class:`~sopcorr.geometry.FeatureGrid` (to turn image coordinates into target cells)."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    target_xy = np.asarray(target_xy, np.float64)
    cells = np.zeros(target_xy.shape, np.float32)
    for p, (_, j) in enumerate(pairs):
        cells[p] = grids[int(j)].image_to_cell(np.nan_to_num(target_xy[p]))
    v = np.asarray(valid, bool) & np.isfinite(target_xy).all(-1)
    w = np.where(v, np.clip(np.nan_to_num(np.asarray(score, np.float32)), 0.0, 1.0), 0.0).astype(np.float32)
    return Teacher(pairs, cells, w)


def teacher_from_store(flow_path: str | Path, feature_store, flow_store=None, min_confirmations: int = 0) -> Teacher:
    """Teacher of a flow store (``flow_store``, or opened from ``flow_path``), its image indices
    mapped to ``feature_store``'s order (matched by image id). A store of other geometry than the
    features' is a DatasetError naming it. ``min_confirmations`` > 0: only the valid cells that
    at least that many hubs confirm (``flow.cycle_min``, the store's ``confirmations``,
    :mod:`sopcorr.flow.cycle`); a store without confirmations is then a DatasetError."""
    from ...flow.pseudo import FlowStore

    fs = flow_store if flow_store is not None else FlowStore.open(flow_path)
    if (fs.input_size, fs.stride) != (feature_store.input_size, feature_store.stride):
        raise DatasetError(f"{flow_path}: flows at input size {fs.input_size} / stride {fs.stride}, the features "
                           f"{feature_store.path} at {feature_store.input_size} / {feature_store.stride}")
    index = {iid: k for k, iid in enumerate(feature_store.ids)}
    missing = [i for i in fs.image_ids if i not in index]
    if missing:
        raise DatasetError(f"{flow_path}: image '{missing[0]}' is not in {feature_store.path}")
    pairs = np.array([[index[a], index[b]] for a, b in fs.pair_ids], np.int64).reshape(-1, 2)
    grids = [feature_store.grid(k) for k in range(len(feature_store))]
    valid = np.asarray(fs.valid[:])
    if min_confirmations > 0:
        if fs.confirmations is None:
            raise DatasetError(f"{flow_path}: no cycle confirmations in the flow store (flow.cycle_min: "
                               f"{min_confirmations} needs flow.cycle_images > 0)")
        valid = valid & (np.asarray(fs.confirmations[:]) >= int(min_confirmations))
    return teacher_from_arrays(pairs, np.asarray(fs.target_xy[:]), valid, np.asarray(fs.score[:]), grids)


def add_keypoints(teacher: Teacher, keypoints: np.ndarray, grids, valid: np.ndarray, weight: float) -> Teacher:
    """Keypoint supervision (uses labels): for every pair, each keypoint visible in both images
    sets the target of the source cell it lies in to the target keypoint's cell, with ``weight``.
    keypoints (N, K, 3) image (x, y, visible) per image (nan when absent); grids: per image its
    FeatureGrid; valid (N, H, W)."""
    target, w = teacher.target.copy(), teacher.weight.copy()
    for p, (i, j) in enumerate(teacher.pairs):
        ks, kt = keypoints[i], keypoints[j]
        both = (ks[:, 2] > 0) & (kt[:, 2] > 0) & np.isfinite(ks[:, :2]).all(1) & np.isfinite(kt[:, :2]).all(1)
        if not both.any():
            continue
        src = np.rint(grids[i].image_to_cell(ks[both, :2])).astype(int)
        dst = grids[j].image_to_cell(kt[both, :2])
        h, wd = valid.shape[1:]
        for (c, r), t in zip(src, dst):
            if 0 <= r < h and 0 <= c < wd and valid[i, r, c]:
                target[p, r, c] = t
                w[p, r, c] = weight
    return Teacher(teacher.pairs, target, w)


class GridPairs:
    """Every category's grids and teacher pairs, in memory.

    grids (N, H, W, C) float16 tensor (all images, categories concatenated); valid (N, H, W)
    bool; pairs (P, 2) global image indices; target (P, H, W, 2); weight (P, H, W);
    images: optional ``images(i) -> (3, S, S)`` normalised image of global image ``i`` (end to
    end training); stride: pixels per cell; input_size: S."""

    def __init__(self, grids: torch.Tensor, valid: torch.Tensor, teacher: Teacher, stride: int, input_size: int,
                 images: Callable[[int], torch.Tensor] | None = None):
        self.grids = grids
        self.valid = valid.bool()
        self.pairs = torch.as_tensor(teacher.pairs, dtype=torch.long)
        self.target = torch.as_tensor(teacher.target, dtype=torch.float32)
        self.weight = torch.as_tensor(teacher.weight, dtype=torch.float32)
        self.stride, self.input_size = int(stride), int(input_size)
        self.images = images
        if len(self.pairs) and (int(self.pairs.max()) >= len(grids) or int(self.pairs.min()) < 0):
            raise SopcorrError("siamese: teacher pairs index images outside the grids")

    def __len__(self) -> int:
        return int(self.pairs.shape[0])

    def fingerprint(self) -> dict:
        """What identifies the training data (stored in checkpoints so a resume sees the same)."""
        return dict(n_pairs=len(self), grid=list(self.shape), stride=self.stride, input_size=self.input_size)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.grids.shape[1]), int(self.grids.shape[2])

    def batch(self, idx: Sequence[int], device="cpu", images: bool = False) -> dict:
        """Pairs ``idx`` as a batch (module docstring); ``images``: (B, 3, S, S) images in
        src/tgt instead of the grids."""
        idx = torch.as_tensor(list(idx), dtype=torch.long)
        a, b = self.pairs[idx, 0], self.pairs[idx, 1]
        if images:
            if self.images is None:
                raise SopcorrError("siamese: end-to-end training needs the images (none were given)")
            src = torch.stack([self.images(int(i)) for i in a])
            tgt = torch.stack([self.images(int(i)) for i in b])
        else:
            src, tgt = self.grids[a].permute(0, 3, 1, 2).float(), self.grids[b].permute(0, 3, 1, 2).float()
        return dict(src=src.to(device), tgt=tgt.to(device), valid_src=self.valid[a].to(device),
                    valid_tgt=self.valid[b].to(device), target=self.target[idx].to(device),
                    weight=(self.weight[idx] * self.valid[a]).to(device))


def _flip_index(valid: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """(B, W) column index maps: c -> wv - 1 - c inside each image's valid extent wv (its valid
    columns) where ``which``, identity elsewhere."""
    B, _, W = valid.shape
    wv = valid.any(1).sum(1)                                       # (B,)
    c = torch.arange(W, device=valid.device)[None].expand(B, W)
    flipped = torch.where(c < wv[:, None], wv[:, None] - 1 - c, c)
    return torch.where(which[:, None], flipped, c), wv


def flip_batch(batch: dict, which: torch.Tensor) -> dict:
    """Flip the pairs ``which`` (B,) bool left-right: both grids (B, C, H, W), their valid masks,
    the target cells (column c of the target -> wv_t - 1 - c) and the weights. Exact for the
    teacher's correspondences: a source cell's match moves with it."""
    if not bool(which.any()):
        return batch
    out = dict(batch)
    which = which.to(batch["valid_src"].device)
    ids, wvs = _flip_index(batch["valid_src"], which)
    idt, wvt = _flip_index(batch["valid_tgt"], which)

    def cols(x, index):  # x (B, ..., W): gather along the last axis
        return x.gather(-1, index.view(index.shape[0], *([1] * (x.dim() - 2)), -1).expand_as(x))

    out["src"] = cols(batch["src"], ids)
    out["tgt"] = cols(batch["tgt"], idt)
    out["valid_src"] = cols(batch["valid_src"], ids)
    out["valid_tgt"] = cols(batch["valid_tgt"], idt)
    out["weight"] = cols(batch["weight"], ids)
    tgt = cols(batch["target"].permute(0, 3, 1, 2), ids).permute(0, 2, 3, 1).clone()
    col = tgt[..., 0]
    tgt[..., 0] = torch.where(which[:, None, None], (wvt[:, None, None] - 1).to(col.dtype) - col, col)
    out["target"] = tgt
    return out


def load_grid_pairs(sources: Sequence[tuple[str | Path, str | Path, str | Path]], split: str | None = None,
                    keypoint_weight: float = 0.0, images: bool = False, min_confirmations: int = 0) -> GridPairs:
    """GridPairs of the pipeline's artifacts: per category (features zarr, flow zarr,
    instances.json). split: keep only pairs whose both images have this split (fine-tuning:
    'train'); keypoint_weight > 0: add keypoint supervision on those pairs (uses labels);
    images: also serve the letterboxed, normalised images (end to end); min_confirmations: the
    teacher's cells confirmed by at least that many hubs only (:func:`teacher_from_store`)."""
    from ...data.generic import read_image
    from ...features.extract import preprocess
    from ...features.store import FeatureStore

    grids, valids, teachers, offset = [], [], [], 0
    geometry, image_refs = None, []
    for fpath, zpath, ipath in sources:
        store = FeatureStore.open(fpath)
        g = (store.input_size, store.stride, store.shape[1:])
        if geometry is not None and g != geometry:
            raise DatasetError(f"{fpath}: grid {g} differs from the other categories' {geometry}")
        geometry = g
        cat = open_category(zpath, ipath)
        teacher = teacher_from_store(zpath, store, cat.flow, min_confirmations)
        insts = cat.instances
        missing = [i for i in store.ids if i not in insts]
        if missing:
            raise DatasetError(f"{fpath}: image '{missing[0]}' is not in {ipath}")
        if split is not None:
            sp = cat.in_split(store.ids, split)
            teacher = teacher.subset(sp[teacher.pairs[:, 0]] & sp[teacher.pairs[:, 1]] if len(teacher) else [])
        if keypoint_weight > 0 and len(teacher):
            teacher = add_keypoints(teacher, cat.keypoints(store.ids), [store.grid(k) for k in range(len(store))],
                                    store.valid, keypoint_weight)
        grids.append(torch.from_numpy(np.asarray(store.features[:], np.float16)))
        valids.append(torch.from_numpy(store.valid))
        teachers.append(Teacher(teacher.pairs + offset, teacher.target, teacher.weight))
        image_refs += [(cat.dataset, insts[i], store.attrs["normalisation"]) for i in store.ids]
        offset += len(store)
    if geometry is None:
        raise SopcorrError("siamese: no categories to train on")
    teacher = Teacher(np.concatenate([t.pairs for t in teachers]).reshape(-1, 2),
                      np.concatenate([t.target for t in teachers]), np.concatenate([t.weight for t in teachers]))
    loader = None
    if images:
        size = geometry[0]
        cache: dict[int, torch.Tensor] = {}

        def loader(i: int) -> torch.Tensor:
            if i not in cache:
                ds, inst, norm = image_refs[i]
                x, _ = preprocess(read_image(ds.path(inst.image)), size, norm["input_mean"], norm["input_std"])
                cache[i] = x.half()
            return cache[i].float()

    return GridPairs(torch.cat(grids), torch.cat(valids), teacher, geometry[1], geometry[0], images=loader)
