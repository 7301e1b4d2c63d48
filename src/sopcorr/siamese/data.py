"""What both architectures' training data start from: per category the teacher's flow store
(``flow/<variant>/<cat>.zarr``, :class:`~sopcorr.flow.pseudo.FlowStore`) and the prepared
category (``data/<cat>/instances.json``): which pairs there are, which lie in a split, and the
images' keypoints. Each architecture turns them into its own batches:
:class:`sopcorr.siamese.paper.data.StorePairs` (letterboxed images and upsampled flows) and
:func:`sopcorr.siamese.correlation.data.load_grid_pairs` (cached feature grids and target cells).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError


@dataclass
class TeacherCategory:
    """One category's teacher and instances.

    flow: the flow store; dataset: the prepared category; instances: id -> Instance;
    keypoint_names: the category's keypoints in order (empty without a category);
    flow_path, instances_path: where they were read (for messages)."""

    flow: object
    dataset: object
    instances: dict
    keypoint_names: list[str]
    flow_path: Path
    instances_path: Path

    def pair_ids(self) -> list[tuple[str, str]]:
        """(source id, target id) of every teacher pair; DatasetError naming the flow store when a
        pair names an instance the category does not have."""
        out = [(str(a), str(b)) for a, b in self.flow.pair_ids]
        for a, b in out:
            if a not in self.instances or b not in self.instances:
                raise DatasetError(f"{self.flow_path}: pair ({a}, {b}) names an instance missing from "
                                   f"{self.instances_path}")
        return out

    def in_split(self, ids, split: str | None) -> np.ndarray:
        """(len(ids),) bool: the instances ``ids`` whose split is ``split`` (all when None)."""
        return np.array([split is None or self.instances[i].split == split for i in ids], bool)

    def keypoints(self, ids) -> np.ndarray:
        """(len(ids), K, 3) image (x, y, visible) of the instances ``ids`` (nan when absent)."""
        return np.stack([self.instances[i].keypoint_array(self.keypoint_names) for i in ids])


def open_category(flow_path: str | Path, instances_path: str | Path) -> TeacherCategory:
    """The :class:`TeacherCategory` of a flow store and a prepared category."""
    from ..data.generic import load_dataset
    from ..flow.pseudo import FlowStore

    ds = load_dataset(instances_path, check_images=False)
    cat = next(iter(ds.categories)) if ds.categories else None
    return TeacherCategory(FlowStore.open(flow_path), ds, ds.by_id(),
                           list(ds.categories[cat].keypoints) if cat else [], Path(flow_path), Path(instances_path))
