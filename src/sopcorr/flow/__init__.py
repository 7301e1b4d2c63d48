"""Dense correspondence by matching: nearest neighbours (:mod:`.nn`), pseudo ground truth from
the manifold embedding (:mod:`.pseudo`), dense SIFT (:mod:`.dsift`) and a SIFT-flow-style
belief-propagation optimiser for any descriptor (:mod:`.siftflow`). Every method returns a
:class:`sopcorr.geometry.DenseCorrespondence`. Conventions: docs/FLOW.md.

Submodules are imported on first use: importing the package loads no torch (:mod:`.nn` and
:mod:`.geometric` compute with it)."""
from __future__ import annotations

import importlib

_LAZY = {
    "dense_sift": "dsift", "nearest_neighbour": "nn", "FlowStore": "pseudo", "sample_pairs": "pseudo",
    "upsample_to_input": "pseudo", "write_flow_store": "pseudo", "siftflow": "siftflow",
    "siftflow_correspondence": "siftflow", "flow_energy": "siftflow",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
