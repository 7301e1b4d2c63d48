"""The pseudo-ground-truth matcher of a self-training round r > 1 (``siamese.rounds``, rule
``pseudo_flow_round``): round r - 1's network, read out by one named method, kept where
forward-backward consistent (as the improved variant's round-1 teacher,
:mod:`sopcorr.matchers.pseudo`)."""
from __future__ import annotations

from ..errors import ConfigError
from .base import ForwardBackward

__all__ = ["ROUND_TEACHERS", "build_round_teacher"]

#: the methods a round's teacher may be (``siamese.round_teacher``): the round before's network,
#: its own read-out or with the geometric matcher's location prior
ROUND_TEACHERS = ("ours_network", "ours_network_geometric")


def build_round_teacher(method: str, settings, checkpoint, fb_tolerance: float) -> ForwardBackward:
    """Method ``method`` (one of :data:`ROUND_TEACHERS`) of round r - 1's network
    (``checkpoint``), built from the job's :class:`~sopcorr.matchers.methods.MatcherSettings`,
    valid where forward-backward consistent within ``fb_tolerance`` source cells."""
    from .methods import build_matcher

    if method not in ROUND_TEACHERS:
        raise ConfigError(f"config error: siamese.round_teacher: must be one of {ROUND_TEACHERS}, got {method!r}")
    return ForwardBackward(build_matcher(method, settings, {"model": str(checkpoint)}), fb_tolerance)
