"""One category as the evaluation protocols see it: its prepared instances (keypoints, boxes,
split, evaluation pairs), their images and the global descriptors used for retrieval.

Built from a :class:`sopcorr.matchers.base.FrameSource` (:meth:`EvalCategory.from_frames`),
which reads the stores a rule declares; nothing here discovers a path.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..data.model import Dataset
from ..errors import SopcorrError


class EvalCategory:
    """dataset: the prepared category (one category; instance order = every store's order);
    images: ``images(i) -> uint8 (h, w, 3)`` (None: read from the dataset's files);
    global_desc: (N, D) retrieval descriptors (None: retrieval unavailable)."""

    def __init__(self, dataset: Dataset, images: Callable[[int], np.ndarray] | None = None,
                 global_desc: np.ndarray | None = None):
        if len(dataset.categories) != 1:
            raise SopcorrError(f"EvalCategory: the dataset must hold one category, got {list(dataset.categories)}")
        self.dataset = dataset
        self.category = next(iter(dataset.categories))
        self._images = images
        self._global = None if global_desc is None else np.asarray(global_desc)

    @classmethod
    def from_frames(cls, frames) -> "EvalCategory":
        """The category of a FrameSource (its dataset, images and raw global descriptors)."""
        return cls(frames.dataset, frames.image, frames.global_desc if frames.features is not None else None)

    @property
    def instances(self) -> list:
        return self.dataset.instances

    @property
    def names(self) -> list[str]:
        """The category's keypoint names (declared order)."""
        return list(self.dataset.categories[self.category].keypoints)

    @property
    def global_desc(self) -> np.ndarray:
        if self._global is None:
            raise SopcorrError(f"{self.category}: no global descriptors (retrieval needs the raw feature store)")
        return self._global

    def split_indices(self, split: str) -> np.ndarray:
        return np.array([i for i, inst in enumerate(self.instances) if inst.split == split], dtype=int)

    def keypoints(self, i: int) -> np.ndarray:
        """(P, 3) x, y, visible of instance ``i`` over the category's names."""
        return self.instances[i].keypoint_array(self.names)

    def bbox(self, i: int) -> tuple:
        """(xmin, ymin, xmax, ymax) of instance ``i`` (the whole image when it has none)."""
        inst = self.instances[i]
        if inst.bbox is None:
            from ..data.generic import image_size

            h, w = image_size(self.dataset.path(inst.image))
            return (0.0, 0.0, float(w - 1), float(h - 1))
        return tuple(float(v) for v in inst.bbox)

    def image(self, i: int) -> np.ndarray:
        if self._images is not None:
            return self._images(int(i))
        from ..data.generic import read_image

        return read_image(self.dataset.path(self.instances[int(i)].image))

    def pairs(self, max_pairs: int | None = None, seed: int = 0) -> list[tuple[int, int]]:
        """The evaluation pairs as (src, tgt) instance indices: the dataset's ``pairs`` (all, or
        ``max_pairs`` of them drawn with ``seed``, in their original order)."""
        idx = {inst.id: i for i, inst in enumerate(self.instances)}
        pairs = [(idx[a], idx[b]) for a, b in self.dataset.pairs if a in idx and b in idx]
        if max_pairs is not None and len(pairs) > max_pairs:
            keep = np.sort(np.random.default_rng(seed).choice(len(pairs), size=max_pairs, replace=False))
            pairs = [pairs[j] for j in keep]
        return pairs
