"""The pipeline's Siamese steps (rules ``train_siamese`` and ``finetune_siamese``): the configured
architecture's training step (``siamese.architecture``, :data:`STEPS`) run through the shared
step skeleton (:meth:`sopcorr.siamese.step.TrainingStep.run`).

* ``paper``: :class:`sopcorr.siamese.paper.train.PaperTraining` (images at
  ``siamese.paper.input_size``, flows upsampled from the flow stores).
* ``correlation``: :class:`sopcorr.siamese.correlation.train.CorrelationTraining` (the head on
  the cached feature grids, or the whole network on the images with ``freeze_encoder: false``,
  taught by the flow stores' matches).
"""
from __future__ import annotations

from pathlib import Path

from .settings import architecture


def _paper():
    from .paper.train import PaperTraining

    return PaperTraining()


def _correlation():
    from .correlation.train import CorrelationTraining

    return CorrelationTraining()


#: architecture -> its training step
STEPS = {"paper": _paper, "correlation": _correlation}


def run_training(sources: list[tuple[str | Path, str | Path, str | Path]], section: dict, backbone: dict,
                 seed: int, out_path: str | Path, loss_png: str | Path | None = None,
                 init_checkpoint: str | Path | None = None, progress: bool = True,
                 start_from: str | Path | None = None, min_confirmations: int = 0,
                 interpolation: float = 1.0) -> list[float]:
    """Train (``init_checkpoint`` None) or fine-tune the configured architecture; ``start_from``:
    a checkpoint a training starts from (a round that continues the round before's network);
    ``min_confirmations``: the teacher's cells confirmed by that many hubs only (``flow.cycle_min``);
    ``interpolation``: with ``start_from``, the network written is that fraction of the way from
    its weights to the trained ones (``siamese.round_interpolation``; 1: the trained weights).

    sources: per category (features zarr, flow zarr, instances.json); section, backbone: the
    config sections ``siamese`` and ``backbone``. Writes the checkpoint to ``out_path`` and the
    loss curve to ``loss_png``; returns the per-step losses."""
    return STEPS[architecture(section)]().run(sources, section, backbone, seed, out_path, loss_png,
                                             init_checkpoint=init_checkpoint, progress=progress,
                                             start_from=start_from, min_confirmations=min_confirmations,
                                             interpolation=interpolation)
