"""The pseudo-ground-truth matcher: the one object that writes ``flow/<variant>/<cat>.zarr``
and computes the ``pseudo_gt`` evaluation rows (evaluation pairs are matched anew with it).

* variant ``paper``, method ``nn`` (the paper): nearest neighbours on the manifold embedding,
  mutual if ``mutual``, optionally sub-cell refined, valid where the cosine similarity is at
  least ``min_similarity``;
* variant ``paper``, method ``siftflow``: SIFT flow on the embedding (``siftflow`` settings),
  ``mutual`` meaning the forward-backward check (1 cell), then the same similarity threshold;
* variant ``improved``: the geometric matcher on raw features + embedding (``geometric``
  settings), valid where forward-backward consistent within ``fb_tolerance`` cells.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

from ..errors import ConfigError
from .base import ForwardBackward, MinSimilarity, Params
from .geometric import GeometricMatcher, GeometricParams
from .nn import NearestNeighbourMatcher, NNParams
from .siftflow import SiftFlowMatcher, SiftFlowParams

__all__ = ["PseudoGTParams", "build_pseudo_gt", "SIFTFLOW_FB_TOLERANCE"]

VARIANTS = ("paper", "improved")
METHODS = ("nn", "siftflow")
#: forward-backward tolerance (cells) of the SIFT-flow pseudo ground truth's 'mutual' check
SIFTFLOW_FB_TOLERANCE = 1.0


@dataclass(frozen=True)
class PseudoGTParams(Params):
    """Settings of the pseudo-ground-truth matcher (see the module docstring). ``siftflow``
    and ``geometric`` are the nested settings of those matchers (their descriptor is fixed
    here: the embedding, and raw features + embedding)."""

    variant: str = "paper"
    method: str = "nn"
    mutual: bool = True
    min_similarity: float = 0.0
    refine: str = "none"
    device: str = "auto"
    fb_tolerance: float = 1.5
    siftflow: SiftFlowParams = field(default_factory=SiftFlowParams)
    geometric: GeometricParams = field(default_factory=GeometricParams)

    SCHEMA: ClassVar[dict[str, str]] = {
        "variant": "manifold.variant", "method": "flow.pseudo_method", "mutual": "flow.mutual",
        "min_similarity": "flow.min_similarity", "refine": "flow.refine", "device": "flow.device",
        "fb_tolerance": "flow.geometric.fb_tolerance",
    }

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ConfigError(f"config error: manifold.variant: must be one of {VARIANTS}, got {self.variant!r}")
        if self.method not in METHODS:
            raise ConfigError(f"config error: flow.pseudo_method: must be one of {METHODS}, got {self.method!r}")

    @classmethod
    def from_config(cls, values: dict, **fixed):
        """As :meth:`Params.from_config`; ``siftflow`` and ``geometric`` may be mappings of
        their own keys (``siftflow_levels`` ..., the ``flow.geometric`` keys and ``seed``)."""
        vals = dict(values)
        if isinstance(vals.get("siftflow"), dict):
            vals["siftflow"] = SiftFlowParams.from_config(vals["siftflow"], descriptor="embedding")
        if isinstance(vals.get("geometric"), dict):
            g = {k: v for k, v in vals["geometric"].items() if k != "fb_tolerance"}
            if "fb_tolerance" in vals["geometric"]:
                vals.setdefault("fb_tolerance", vals["geometric"]["fb_tolerance"])
            vals["geometric"] = GeometricParams.from_config(g)
        return super().from_config(vals, **fixed)


def build_pseudo_gt(params: PseudoGTParams):
    """The pseudo-ground-truth matcher of ``params`` (frames need an embedding; the improved
    variant also raw features)."""
    p = params
    if p.variant == "improved":
        return ForwardBackward(GeometricMatcher(p.geometric), p.fb_tolerance)
    if p.method == "siftflow":
        m = SiftFlowMatcher(replace(p.siftflow, descriptor="embedding"))
        if p.mutual:
            m = ForwardBackward(m, SIFTFLOW_FB_TOLERANCE)
        return MinSimilarity(m, p.min_similarity)
    nn = NearestNeighbourMatcher(NNParams(descriptor="embedding", mutual=p.mutual, refine=p.refine,
                                          device=p.device))
    return MinSimilarity(nn, p.min_similarity)
