"""Matchers: one class per correspondence method, one file each, built from a frozen params
dataclass (whose defaults are the schema's) and, where the method has one, a model.

Every matcher offers ``correspondence(src: Frame, tgt: Frame) -> DenseCorrespondence`` and,
where the method has them, ``descriptors(frame) -> ((H', W', D) array, FeatureGrid)``.

=======================  ==========================================================  =====================================================
kind                     class (module)                                              params
=======================  ==========================================================  =====================================================
``nn``                   :class:`.nn.NearestNeighbourMatcher`                        :class:`.nn.NNParams`
``siftflow``             :class:`.siftflow.SiftFlowMatcher`                          :class:`.siftflow.SiftFlowParams`
``geometric``            :class:`.geometric.GeometricMatcher`                        :class:`.geometric.GeometricParams`
``paper_network``        :class:`.paper_network.PaperNetworkMatcher` (checkpoint)    :class:`.paper_network.PaperNetworkParams`
``correlation_network``  :class:`.correlation_network.CorrelationNetworkMatcher`     :class:`.correlation_network.CorrelationNetworkParams`
``network_geometric``    :class:`.network_geometric.NetworkGeometricMatcher`         :class:`.network_geometric.NetworkGeometricParams`
=======================  ==========================================================  =====================================================

A trained network's checkpoint picks its own class: :func:`.networks.network_matcher` reads the
architecture it records; :func:`.learned.best_learned_matcher` is a finished run's best learned
matcher (``sopcorr match --run``).

``build(kind, params, **models)`` is the selector every consumer uses;
:func:`.pseudo.build_pseudo_gt` composes the pseudo-ground-truth matcher,
:mod:`.methods` names the evaluation tables' methods. Frames: :mod:`.base`.

Submodules are imported on first use (the Snakefile reads :mod:`.methods` at parse time
without loading torch).
"""
from __future__ import annotations

import importlib

#: kind -> (module, class) of every matcher; a new method is one new file and one entry here
MATCHERS: dict[str, tuple[str, str]] = {
    "nn": ("nn", "NearestNeighbourMatcher"),
    "siftflow": ("siftflow", "SiftFlowMatcher"),
    "geometric": ("geometric", "GeometricMatcher"),
    "paper_network": ("paper_network", "PaperNetworkMatcher"),
    "correlation_network": ("correlation_network", "CorrelationNetworkMatcher"),
    "network_geometric": ("network_geometric", "NetworkGeometricMatcher"),
}

_LAZY = {
    "Frame": "base", "FrameSource": "base", "Matcher": "base", "MatcherUnavailable": "base",
    "ForwardBackward": "base", "MinSimilarity": "base", "forward_backward_valid": "base",
    "NNParams": "nn", "NearestNeighbourMatcher": "nn",
    "SiftFlowParams": "siftflow", "SiftFlowMatcher": "siftflow",
    "GeometricParams": "geometric", "GeometricMatcher": "geometric",
    "NetworkParams": "networks", "NetworkMatcher": "networks", "network_matcher": "networks",
    "PaperNetworkParams": "paper_network", "PaperNetworkMatcher": "paper_network",
    "CorrelationNetworkParams": "correlation_network", "CorrelationNetworkMatcher": "correlation_network",
    "NetworkGeometricParams": "network_geometric", "NetworkGeometricMatcher": "network_geometric",
    "best_learned_matcher": "learned",
    "PseudoGTParams": "pseudo", "build_pseudo_gt": "pseudo",
    "METHODS": "methods", "Method": "methods", "MatcherSettings": "methods",
    "build_method": "methods", "build_methods": "methods",
}

__all__ = ["MATCHERS", "build", "matcher_class", *_LAZY]


def matcher_class(kind: str):
    """The matcher class of ``kind`` (a key of :data:`MATCHERS`)."""
    from ..errors import SopcorrError

    if kind not in MATCHERS:
        raise SopcorrError(f"unknown matcher '{kind}' (valid: {', '.join(MATCHERS)})")
    mod, cls = MATCHERS[kind]
    return getattr(importlib.import_module(f"{__name__}.{mod}"), cls)


def build(kind: str, params=None, **models):
    """The matcher ``kind`` built from ``params`` (default: its params class's defaults) and
    ``models`` (e.g. ``checkpoint=`` for a trained network)."""
    cls = matcher_class(kind)
    return cls(params=params if params is not None else cls.params_class(), **models)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
