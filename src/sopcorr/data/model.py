"""The instance model every reader produces and every stage consumes.

A :class:`Dataset` mirrors the generic dataset format (``dataset.json``, see the README's
"Bring your own data"): categories with their keypoint names and flip pairs, instances, and
optional evaluation pairs. Coordinates are 0-based pixels, x right, y down.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class CategorySpec:
    """keypoints: declared keypoint names (ordered); flip_pairs: (left, right) name pairs."""

    keypoints: list[str]
    flip_pairs: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Instance:
    """One annotated object.

    id:        unique instance id (e.g. ``"bird/0001"``)
    image:     image path relative to the dataset root
    category:  category name
    bbox:      (xmin, ymin, xmax, ymax) float, image pixels
    keypoints: name -> (x, y, visible) with visible in {0, 1}; absent names are not annotated
    split:     "train" or "test"
    parts:     optional path (relative to the root) of a part-label PNG (0 = background)
    canonical: optional path (relative to the root) of an (H, W, 2) float .npy of template
               coordinates per object pixel (NaN off the object)
    """

    id: str
    image: str
    category: str
    bbox: tuple[float, float, float, float]
    keypoints: dict[str, tuple[float, float, int]]
    split: str
    parts: str | None = None
    canonical: str | None = None

    def keypoint_array(self, names: list[str]) -> np.ndarray:
        """(len(names), 3) float array of x, y, visible; rows of unannotated names are
        (nan, nan, 0)."""
        out = np.full((len(names), 3), np.nan)
        out[:, 2] = 0
        for i, n in enumerate(names):
            if n in self.keypoints:
                out[i] = self.keypoints[n]
        return out


@dataclass
class Dataset:
    """A dataset: ``root`` is the folder that instance paths are relative to."""

    name: str
    root: Path
    categories: dict[str, CategorySpec]
    instances: list[Instance]
    pairs: list[tuple[str, str]] = field(default_factory=list)

    def path(self, relative: str) -> Path:
        return Path(self.root) / relative

    def by_id(self) -> dict[str, Instance]:
        return {inst.id: inst for inst in self.instances}

    def of_category(self, category: str) -> "Dataset":
        """The sub-dataset of one category (instances sorted by id, pairs restricted)."""
        insts = sorted((i for i in self.instances if i.category == category), key=lambda i: i.id)
        ids = {i.id for i in insts}
        pairs = [p for p in self.pairs if p[0] in ids and p[1] in ids]
        return Dataset(self.name, self.root, {category: self.categories[category]}, insts, pairs)
