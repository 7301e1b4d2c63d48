"""The prepare stage: one category's instances in the generic format (``instances.json``) and
the data summary table."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DatasetError
from .generic import load_dataset, write_dataset
from .model import Dataset

if TYPE_CHECKING:
    import pandas as pd


def source_dataset(dataset_cfg: dict, dataset_json: str | Path | None = None,
                   categories: list[str] | None = None) -> Dataset:
    """The configured dataset (config section ``dataset``): the generic / synthetic
    ``dataset_json`` loaded with validation, or the VOC 2012 + Berkeley reader."""
    kind = dataset_cfg["kind"]
    tf = float(dataset_cfg.get("train_fraction", 0.8))
    if kind in ("synthetic", "generic"):
        if dataset_json is None:
            raise DatasetError(f"dataset.kind {kind}: no dataset.json given")
        return load_dataset(dataset_json, check_images=True, train_fraction=tf)
    if kind == "voc_berkeley":
        from .voc import load_voc_berkeley

        v = dataset_cfg["voc"]
        return load_voc_berkeley(v["voc_root"], v["keypoints_root"], list(categories or []),
                                 include_truncated=v["include_truncated"],
                                 include_difficult=v["include_difficult"], train_fraction=tf,
                                 max_instances_per_category=v.get("max_instances_per_category"))
    raise DatasetError(f"dataset.kind: unknown kind {kind!r}")


def prepare_category(ds: Dataset, category: str, out_path: str | Path) -> Dataset:
    """Write ``out_path`` (``results/<run>/data/<cat>/instances.json``): the generic format
    restricted to ``category`` (instances sorted by id, pairs restricted), with a top-level
    "root" naming the dataset folder (relative to the JSON's folder unless the dataset root is
    absolute). Returns the category's Dataset."""
    if category not in ds.categories:
        raise DatasetError(f"{ds.root}: category '{category}' not in the dataset "
                           f"(it has: {', '.join(sorted(ds.categories))})")
    sub = ds.of_category(category)
    if not sub.instances:
        raise DatasetError(f"{ds.root}: category '{category}' has no instances")
    write_dataset(sub, out_path)
    return sub


def summarize(instance_files: list[str | Path]) -> pd.DataFrame:
    """One row per prepared category: instances, train, test, keypoints (declared names),
    annotated (keypoint annotations), visible (visible ones), visible_fraction
    (visible / annotated), pairs, with_ground_truth (instances with part + canonical maps)."""
    rows = []
    for f in instance_files:
        ds = load_dataset(f, check_images=False)
        for cat, spec in ds.categories.items():
            insts = [i for i in ds.instances if i.category == cat]
            ann = sum(len(i.keypoints) for i in insts)
            vis = sum(v for i in insts for (_, _, v) in i.keypoints.values())
            rows.append({
                "category": cat, "instances": len(insts),
                "train": sum(i.split == "train" for i in insts), "test": sum(i.split == "test" for i in insts),
                "keypoints": len(spec.keypoints), "annotated": ann, "visible": vis,
                "visible_fraction": round(vis / ann, 4) if ann else 0.0,
                "pairs": len(ds.pairs),
                "with_ground_truth": sum(i.parts is not None and i.canonical is not None for i in insts),
            })
    import pandas as pd  # here, not at the top: prepare_category's jobs (no table) start 0.3 s sooner

    return pd.DataFrame(rows)
