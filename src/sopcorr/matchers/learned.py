"""A finished run's best learned matcher: the one entry point of ``sopcorr match --run``."""
from __future__ import annotations

from pathlib import Path

__all__ = ["LEARNED_CHECKPOINTS", "best_learned_matcher"]


#: checkpoints of a run's learned network, best first: the fine-tuned network before the
#: trained one, the configured default variant (improved) before the paper's
LEARNED_CHECKPOINTS = ("siamese/improved/finetuned.pt", "siamese/improved/model.pt",
                       "siamese/paper/finetuned.pt", "siamese/paper/model.pt")


def best_learned_matcher(run_dir: str | Path, category: str | None = None, device: str = "auto"):
    """``(matcher, description)``: a finished run's best learned matcher, the one entry point
    of ``sopcorr match --run``.

    run_dir: ``results/<run>``; category: the images' category when known (the learned network
    is one for all categories, so it does not change the choice). The matcher is a
    :class:`~sopcorr.matchers.siamese.SiameseMatcher` over the first checkpoint of
    :data:`LEARNED_CHECKPOINTS` that exists (either architecture); its
    ``correspondence(src, tgt)`` needs only the frames' images. SopcorrError (one line) when the
    run has no trained network."""
    from ..errors import SopcorrError
    from .siamese import SiameseMatcher, SiameseParams

    run_dir = Path(run_dir)
    for rel in LEARNED_CHECKPOINTS:
        ck = run_dir / rel
        if ck.is_file():
            m = SiameseMatcher(ck, SiameseParams(device=device))
            arch = ("the correlation network (learned descriptors, correlation + kernel soft-argmax read-out)"
                    if m.network is not None else "the paper's flow-regressing Siamese network")
            stage = "fine-tuned" if ck.name == "finetuned.pt" else "trained"
            return m, f"{arch}, {stage}, checkpoint {ck}"
    raise SopcorrError(f"--run {run_dir}: no trained network under it (looked for "
                       f"{', '.join(LEARNED_CHECKPOINTS)}); finish the run's siamese stage first")
