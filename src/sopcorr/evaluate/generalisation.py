"""Generalisation protocols: the learned network on images and categories it never trained on
(issue 20). The run's own tables are **transductive**: the manifold, the teacher's pseudo ground
truth and the network are fitted on every image of the run, the images they are then evaluated
on included (no labels are used). These protocols take the evaluated images out of what is
fitted:

* **inductive** (``tables/inductive.csv``): per category the images are split in half by a
  seeded hash of the instance id (:func:`half_split`). The manifold (its embedding), the
  teacher's pseudo ground truth and the network are fitted on the *fit* half only (the
  workflow hands those steps a feature store and an instance file of the fit half,
  :func:`write_inductive_split`); the *held-out* half is embedded with the fitted model as a
  new image would be, and every method is evaluated on the dataset's pairs among the held-out
  half (:func:`evaluation_dataset`).
* **transfer** (``tables/transfer.csv``, leave one category out): for each category *c* a
  network trained on the pseudo ground truth of every other category
  (:func:`leave_one_out`) is evaluated on *c*'s pairs.
* **transfer_from** (``tables/transfer_from_<source>.csv``): another run's network evaluated on
  this run's pairs at this run's input size.

Each protocol's table has the layout of ``pair_pck`` (method, alpha, one column per category,
mean, per_pair) and is built from per-category records of the pair-wise evaluation
(:mod:`sopcorr.evaluate.pairs`) restricted to the protocol's pairs.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.model import Dataset
from ..errors import DatasetError, SopcorrError

__all__ = ["PROTOCOL_METHODS", "PROTOCOLS", "half_split", "InductiveSplit", "inductive_split", "fit_dataset",
           "evaluation_dataset", "write_inductive_split", "leave_one_out"]

#: the methods each protocol's table evaluates on the same pairs (names of
#: :data:`sopcorr.matchers.methods.METHODS`; ``ours_network*`` read the protocol's network)
PROTOCOL_METHODS: dict[str, list[str]] = {
    "inductive": ["nn_raw", "convflow", "ours_geometric", "ours_network", "ours_network_geometric"],
    "transfer": ["nn_raw", "ours_geometric", "ours_network", "ours_network_geometric"],
    "transfer_from": ["nn_raw", "ours_geometric", "ours_network", "ours_network_geometric"],
}
#: the protocols (keys of :data:`PROTOCOL_METHODS`)
PROTOCOLS = tuple(PROTOCOL_METHODS)


def half_split(ids: Sequence[str], seed: int) -> np.ndarray:
    """(N,) bool over ``ids``: True for the *fit* half. The ids are ordered by
    ``crc32("<seed>:<id>")`` (ties by position) and the first ``N // 2`` are the fit half, so
    the held-out half has ``N - N // 2`` images. Independent of the ids' order and of the other
    ids' presence only through the ordering (deterministic from ``seed``)."""
    ids = [str(i) for i in ids]
    h = np.array([zlib.crc32(f"{int(seed)}:{i}".encode("utf-8")) for i in ids], dtype=np.int64)
    order = np.argsort(h, kind="stable")
    out = np.zeros(len(ids), bool)
    out[order[: len(ids) // 2]] = True
    return out


@dataclass(frozen=True)
class InductiveSplit:
    """One category's inductive split: ``fit`` and ``held_out`` instance ids (sorted); ``fit``
    is what the fitted steps may see."""

    category: str
    fit: tuple[str, ...]
    held_out: tuple[str, ...]


def inductive_split(dataset: Dataset, seed: int) -> InductiveSplit:
    """The split of a one-category dataset (a prepared ``data/<cat>/instances.json``).
    DatasetError when the category has fewer than 4 images (each half needs two: a pair)."""
    if len(dataset.categories) != 1:
        raise DatasetError(f"{dataset.root}: the inductive split works on one category, got "
                           f"{sorted(dataset.categories)}")
    cat = next(iter(dataset.categories))
    ids = [inst.id for inst in dataset.instances]
    if len(ids) < 4:
        raise DatasetError(f"category '{cat}': {len(ids)} image(s); the inductive split needs at least 4 "
                           f"(two per half)")
    fit = half_split(ids, seed)
    return InductiveSplit(cat, tuple(sorted(i for i, f in zip(ids, fit) if f)),
                          tuple(sorted(i for i, f in zip(ids, fit) if not f)))


def _restricted(dataset: Dataset, keep_ids, pair_ids) -> Dataset:
    keep = set(keep_ids)
    pair_ids = set(pair_ids)
    insts = [inst for inst in dataset.instances if inst.id in keep]
    pairs = [p for p in dataset.pairs if p[0] in pair_ids and p[1] in pair_ids]
    return Dataset(dataset.name, dataset.root, dict(dataset.categories), insts, pairs)


def fit_dataset(dataset: Dataset, split: InductiveSplit) -> Dataset:
    """The fit half: its instances only (same order), the dataset's pairs among them."""
    return _restricted(dataset, split.fit, split.fit)


def evaluation_dataset(dataset: Dataset, split: InductiveSplit) -> Dataset:
    """Every instance (the feature store's order: the evaluation embeds the held-out half with
    the fitted model), the dataset's pairs restricted to pairs among the held-out half."""
    return _restricted(dataset, [i.id for i in dataset.instances], split.held_out)


def write_inductive_split(instances: str | Path, features: str | Path, seed: int, fit_instances: str | Path,
                          fit_features: str | Path, evaluation: str | Path) -> InductiveSplit:
    """Write one category's inductive inputs (each atomically):

    * ``fit_instances`` (instances.json of the fit half) and ``fit_features`` (a feature store
      of the fit half's images, the ``features`` store's rows (N_fit, H, W, C), valid masks and
      global descriptors; attrs with the fit half's image ids): what the fitted steps (manifold,
      pseudo ground truth, network) read;
    * ``evaluation`` (instances.json of every image, the dataset's pairs among the held-out
      half): what the evaluation reads.

    instances, features: the run's ``data/<cat>/instances.json`` and ``features/<cat>.zarr``."""
    from ..data.generic import load_dataset, write_dataset
    from ..features.store import FeatureStore, write_feature_store

    ds = load_dataset(instances, check_images=False)
    store = FeatureStore.open(features)
    ids = [inst.id for inst in ds.instances]
    if list(store.ids) != ids:
        raise DatasetError(f"{features}: image ids differ from {instances} (rerun the stage that wrote it)")
    split = inductive_split(ds, seed)
    fit = set(split.fit)
    rows = np.array([i for i, iid in enumerate(ids) if iid in fit], dtype=int)
    attrs = {k: v for k, v in store.attrs.items() if k != "complete"}
    attrs["image_ids"] = [ids[i] for i in rows]
    attrs["image_hw"] = [list(map(int, store.image_hw[i])) for i in rows]
    attrs["inductive_split"] = {"seed": int(seed), "source": str(features), "held_out": len(split.held_out)}
    write_feature_store(fit_features, (np.asarray(store.features[int(i)]) for i in rows), store.valid[rows],
                        store.global_desc[rows], attrs, dtype=store.features.dtype)
    write_dataset(fit_dataset(ds, split), fit_instances)
    write_dataset(evaluation_dataset(ds, split), evaluation)
    return split


def leave_one_out(categories: Sequence[str], held_out: str) -> list[str]:
    """The categories a leave-one-category-out network trains on: every category but
    ``held_out`` (config order). SopcorrError when ``held_out`` is not one of them or none is
    left."""
    cats = list(categories)
    if held_out not in cats:
        raise SopcorrError(f"leave-one-category-out: '{held_out}' is not a category of the run ({', '.join(cats)})")
    rest = [c for c in cats if c != held_out]
    if not rest:
        raise SopcorrError(f"leave-one-category-out needs at least 2 categories; the run has 1 ({held_out})")
    return rest
