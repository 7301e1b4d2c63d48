"""Dense correspondence by matching: nearest neighbours (:mod:`.nn`), pseudo ground truth from
the manifold embedding (:mod:`.pseudo`), dense SIFT (:mod:`.dsift`) and a SIFT-flow-style
belief-propagation optimiser for any descriptor (:mod:`.siftflow`). Every method returns a
:class:`sopcorr.geometry.DenseCorrespondence`. Conventions: docs/FLOW.md."""
from .dsift import dense_sift
from .nn import nearest_neighbour
from .pseudo import FlowStore, sample_pairs, upsample_to_input, write_flow_store
from .siftflow import flow_energy, siftflow, siftflow_correspondence

__all__ = ["dense_sift", "nearest_neighbour", "FlowStore", "sample_pairs", "upsample_to_input",
           "write_flow_store", "siftflow", "siftflow_correspondence", "flow_energy"]
