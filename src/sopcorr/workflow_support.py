"""Helpers the Snakemake rules call at parse time (kept out of the rules so they are tested)."""
from __future__ import annotations

from pathlib import Path

from .data.generic import load_dataset
from .data.model import Dataset
from .errors import ConfigError, DatasetError

#: PASCAL VOC / Berkeley keypoint categories
VOC_CATEGORIES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]


def check_dataset(config: dict) -> Dataset | None:
    """Parse-time check of a ``dataset.kind: generic`` dataset: read and validate its
    ``dataset.json`` at the JSON level (top-level keys, categories, instance ids, fields and their
    types, boxes, pairs; not the images, which the prepare job checks). Raises the
    DatasetError the loader (:func:`sopcorr.data.generic.load_dataset`) raises, so a broken
    dataset fails ``snakemake -n`` with the same one line as the job would. Returns the parsed
    dataset (None for the other kinds, whose annotations a job generates or reads)."""
    ds = config["dataset"]
    if ds["kind"] != "generic":
        return None
    path = Path(ds["path"]) / "dataset.json"
    if not path.is_file():
        raise DatasetError(f"{path}: dataset.json not found (dataset.path: {ds['path']})")
    return load_dataset(path, check_images=False, train_fraction=float(ds["train_fraction"]))


def dataset_categories(config: dict) -> list[str]:
    """Categories the configured dataset offers (generic: after :func:`check_dataset`)."""
    ds = config["dataset"]
    if ds["kind"] == "synthetic":
        return list(ds["synthetic"]["categories"])
    if ds["kind"] == "voc_berkeley":
        return list(VOC_CATEGORIES)
    return sorted(check_dataset(config).categories)


def resolve_categories(config: dict) -> list[str]:
    """The categories to process: ``config['categories']`` (checked against the dataset) or all."""
    available = dataset_categories(config)
    wanted = config.get("categories")
    if not wanted:
        return available
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise ConfigError(
            f"config error: categories: unknown category '{unknown[0]}' (the dataset has: {', '.join(available)})"
        )
    return list(wanted)
