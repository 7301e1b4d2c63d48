"""A finished run's best learned matcher: the one entry point of ``sopcorr match --run``."""
from __future__ import annotations

from pathlib import Path

__all__ = ["LEARNED_CHECKPOINTS", "best_learned_matcher"]


#: checkpoints of a run's learned network in the order they are tried: the configured default
#: variant (improved) before the paper's, and within a variant the trained network before the
#: fine-tuned one (the matcher it serves, ``ours_network_geometric``, reads ``model.pt``; with
#: the prior the fine-tuned descriptors were worse: dev 72.9 vs 76.0 pair-wise PCK@0.1,
#: docs/RESULTS.md)
LEARNED_CHECKPOINTS = ("siamese/improved/model.pt", "siamese/improved/finetuned.pt",
                       "siamese/paper/model.pt", "siamese/paper/finetuned.pt")


def best_learned_matcher(run_dir: str | Path, category: str | None = None, device: str = "auto",
                         seed: int = 0):
    """``(matcher, description)``: a finished run's best learned matcher, the one entry point
    of ``sopcorr match --run``.

    run_dir: ``results/<run>``; category: the images' category when known (the learned network
    is one for all categories, so it does not change the choice); seed: the prior's RANSAC.

    * A correlation network (``siamese.architecture: correlation``, the default): the method
      ``ours_network_geometric``, the best learned method of the tables (dev split 75.9 vs the
      network's own read-out 75.0 pair-wise PCK@0.1, docs/RESULTS.md): a
      :class:`~sopcorr.matchers.network_geometric.NetworkGeometricMatcher` on the first
      checkpoint of :data:`LEARNED_CHECKPOINTS` that exists, with the geometric matcher's
      schema-default settings (``flow.geometric``; a run does not record its config).
    * The paper's flow network: its own flow (:class:`~sopcorr.matchers.siamese.SiameseMatcher`),
      the fine-tuned checkpoint first.

    ``correspondence(src, tgt)`` needs only the frames' images. SopcorrError (one line) when the
    run has no trained network."""
    from ..errors import SopcorrError
    from ..siamese.checkpoint import architecture_of, load_checkpoint
    from .geometric import GeometricParams
    from .network_geometric import NetworkGeometricMatcher
    from .siamese import SiameseMatcher, SiameseParams

    run_dir = Path(run_dir)
    found = [run_dir / rel for rel in LEARNED_CHECKPOINTS if (run_dir / rel).is_file()]
    if not found:
        raise SopcorrError(f"--run {run_dir}: no trained network under it (looked for "
                           f"{', '.join(LEARNED_CHECKPOINTS)}); finish the run's siamese stage first")
    ck = found[0]
    stage = lambda p: "fine-tuned" if p.name == "finetuned.pt" else "trained"  # noqa: E731
    if architecture_of(load_checkpoint(ck)) == "correlation":
        m = NetworkGeometricMatcher(GeometricParams(seed=int(seed)), checkpoint=ck, device=device)
        return m, ("ours_network_geometric: the correlation network's read-out (learned descriptors, "
                   f"correlation + kernel soft-argmax) with the geometric matcher's affine prior, "
                   f"{stage(ck)}, checkpoint {ck}")
    # the paper's architecture: its own flow, the fine-tuned network first
    ck = next((p for p in found if p.parent == ck.parent and p.name == "finetuned.pt"), ck)
    m = SiameseMatcher(ck, SiameseParams(device=device))
    return m, f"the paper's flow-regressing Siamese network, {stage(ck)}, checkpoint {ck}"
