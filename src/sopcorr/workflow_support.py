"""Helpers the Snakemake rules call at parse time (kept out of the rules so they are tested)."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import ConfigError, DatasetError

#: PASCAL VOC / Berkeley keypoint categories
VOC_CATEGORIES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]


def dataset_categories(config: dict) -> list[str]:
    """Categories the configured dataset offers (cheap: reads only the JSON's category list)."""
    ds = config["dataset"]
    if ds["kind"] == "synthetic":
        return list(ds["synthetic"]["categories"])
    if ds["kind"] == "voc_berkeley":
        return list(VOC_CATEGORIES)
    path = Path(ds["path"]) / "dataset.json"
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise DatasetError(f"{path}: dataset.json not found (dataset.path: {ds['path']})") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    cats = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(cats, dict) or not cats:
        raise DatasetError(f"{path}: field 'categories' must be a non-empty mapping")
    return sorted(cats)


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
