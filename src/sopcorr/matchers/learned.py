"""A finished run's best learned matcher: the one entry point of ``sopcorr match --run``."""
from __future__ import annotations

from pathlib import Path

__all__ = ["LEARNED_CHECKPOINTS", "learned_checkpoints", "best_learned_matcher"]


#: checkpoints of a run's learned network in the order they are tried: the configured default
#: variant (improved) before the paper's, and within a variant the last round's trained network
#: (``round<r>/model.pt``, the highest r first: rounds of self-training, ``siamese.rounds``),
#: then round 1's, then the fine-tuned one (the matcher it serves, ``ours_network_geometric``,
#: reads the trained network; with the prior the fine-tuned descriptors were worse: dev 72.9 vs
#: 76.0 pair-wise PCK@0.1, docs/RESULTS.md)
LEARNED_CHECKPOINTS = ("siamese/improved/round<r>/model.pt", "siamese/improved/model.pt",
                       "siamese/improved/finetuned.pt", "siamese/paper/round<r>/model.pt",
                       "siamese/paper/model.pt", "siamese/paper/finetuned.pt")


def _round(path: Path) -> int:
    try:
        return int(path.parent.name[len("round"):])
    except ValueError:
        return -1


def learned_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's checkpoints of :data:`LEARNED_CHECKPOINTS` that exist, in that order (rounds
    highest first); SopcorrError (one line) when there is none."""
    from ..errors import SopcorrError

    run_dir = Path(run_dir)
    found = []
    for rel in LEARNED_CHECKPOINTS:
        if "<r>" in rel:
            base = run_dir / rel.split("round<r>")[0]
            rounds = [p for p in base.glob("round*/model.pt") if _round(p) > 1]
            found += sorted(rounds, key=_round, reverse=True)
        elif (run_dir / rel).is_file():
            found.append(run_dir / rel)
    if not found:
        raise SopcorrError(f"--run {run_dir}: no trained network under it (looked for "
                           f"{', '.join(LEARNED_CHECKPOINTS)}); finish the run's siamese stage first")
    return found


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
    * The paper's flow network: its own flow
      (:class:`~sopcorr.matchers.paper_network.PaperNetworkMatcher`), the fine-tuned checkpoint
      first.

    ``correspondence(src, tgt)`` needs only the frames' images. SopcorrError (one line) when the
    run has no trained network."""
    from ..siamese.checkpoint import read_checkpoint

    found = learned_checkpoints(run_dir)
    ck = read_checkpoint(found[0])
    return _BEST[ck.architecture](ck, found, device, int(seed))


def _stage(path: Path) -> str:
    if path.name == "finetuned.pt":
        return "fine-tuned"
    return f"trained, round {_round(path)}" if _round(path) > 1 else "trained"


def _best_correlation(ck, found, device: str, seed: int):
    """ours_network_geometric on the first checkpoint found."""
    from .geometric import GeometricParams
    from .network_geometric import NetworkGeometricMatcher, NetworkGeometricParams

    m = NetworkGeometricMatcher(NetworkGeometricParams(geometric=GeometricParams(seed=seed), device=device),
                                checkpoint=ck)
    return m, ("ours_network_geometric: the correlation network's read-out (learned descriptors, "
               f"correlation + kernel soft-argmax) with the geometric matcher's affine prior, "
               f"{_stage(ck.path)}, checkpoint {ck.path}")


def _best_paper(ck, found, device: str, seed: int):
    """The paper network's own flow, the fine-tuned checkpoint of the same variant first."""
    from .paper_network import PaperNetworkMatcher, PaperNetworkParams

    path = next((p for p in found if p.parent == ck.path.parent and p.name == "finetuned.pt"), ck.path)
    m = PaperNetworkMatcher(PaperNetworkParams(device=device), checkpoint=path)
    return m, f"the paper's flow-regressing Siamese network, {_stage(path)}, checkpoint {path}"


#: the architecture of a run's first checkpoint -> its best learned matcher
_BEST = {"correlation": _best_correlation, "paper": _best_paper}
