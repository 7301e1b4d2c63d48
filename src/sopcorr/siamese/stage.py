"""The pipeline's Siamese steps (rules ``train_siamese`` and ``finetune_siamese``) for either
architecture (config ``siamese.architecture``).

* ``paper``: :func:`sopcorr.siamese.train.run_paper_training` (images at ``siamese.input_size``,
  flows upsampled from the flow stores).
* ``correlation``: :func:`run_network_training`: the head trains on the cached feature grids
  (``freeze_encoder: true``) or the whole network on the images (``false``), taught by the flow
  stores' matches (:mod:`sopcorr.siamese.grids`, :mod:`sopcorr.siamese.fit`).

Fine-tuning starts from the trained checkpoint and uses only pairs whose both images are in the
keypoint training split; without ``keypoint_supervision`` it uses no labels (weakly
supervised); with it the training split's keypoints teach their cells (supervised).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import SopcorrError
from .checkpoint import architecture_of, load_checkpoint, model_from_checkpoint, save_checkpoint
from .model import CheckpointError
from .plots import plot_loss
from .settings import architecture, fit_config, network_spec

log = logging.getLogger("sopcorr.siamese")


def run_training(sources: list[tuple[str | Path, str | Path, str | Path]], section: dict, backbone: dict,
                 seed: int, out_path: str | Path, loss_png: str | Path | None = None,
                 init_checkpoint: str | Path | None = None, progress: bool = True) -> list[float]:
    """Train (``init_checkpoint`` None) or fine-tune the configured architecture.

    sources: per category (features zarr, flow zarr, instances.json); section, backbone: the
    config sections ``siamese`` and ``backbone``. Writes the checkpoint to ``out_path`` and the
    loss curve to ``loss_png``; returns the per-step losses."""
    arch = architecture(section)
    if init_checkpoint is not None:
        got = architecture_of(load_checkpoint(init_checkpoint))
        if got != arch:
            raise CheckpointError(f"{init_checkpoint}: a '{got}' network, the config asks for "
                                  f"siamese.architecture: {arch}")
    if arch == "paper":
        from .train import run_paper_training

        return run_paper_training([(f, i) for _, f, i in sources], section, backbone, seed, out_path, loss_png,
                                  init_checkpoint=init_checkpoint, progress=progress)
    return run_network_training(sources, section, backbone, seed, out_path, loss_png, init_checkpoint, progress)


def run_network_training(sources, section: dict, backbone: dict, seed: int, out_path: str | Path,
                         loss_png: str | Path | None = None, init_checkpoint: str | Path | None = None,
                         progress: bool = True) -> list[float]:
    """The correlation network's step (see :func:`run_training`)."""
    from ..features.store import FeatureStore
    from .correlation import build_network
    from .fit import fit
    from .grids import load_grid_pairs
    from .loop import resolve_device

    finetune = init_checkpoint is not None
    cfg = fit_config(section, seed, finetune=finetune)
    dev = resolve_device(section["device"])
    end_to_end = not cfg.freeze_encoder
    first = FeatureStore.open(sources[0][0])
    if finetune:
        ck = load_checkpoint(init_checkpoint)
        model = model_from_checkpoint(ck, device=dev, path=init_checkpoint, with_encoder=end_to_end)
        spec = model.spec
        if spec.backbone != backbone["name"]:
            raise CheckpointError(f"{init_checkpoint}: trained with backbone '{spec.backbone}', "
                                  f"the config asks for '{backbone['name']}'")
        if spec.encoder_trained and not end_to_end:
            raise CheckpointError(f"{init_checkpoint}: its encoder was trained end to end; fine-tune it with "
                                  f"siamese.freeze_encoder: false (the cached grids are the untrained encoder's)")
        if (spec.input_size, tuple(spec.layers)) != (first.input_size, tuple(first.attrs["layers"])):
            raise CheckpointError(f"{init_checkpoint}: trained on {spec.input_size} px grids of layers "
                                  f"{list(spec.layers)}, the features are {first.input_size} px of {first.attrs['layers']}")
    else:
        spec = network_spec(section, backbone, first.attrs, first.shape[-1])
        torch.manual_seed(cfg.seed)
        model = build_network(spec, device=dev, with_encoder=end_to_end)
    data = load_grid_pairs(sources, split="train" if finetune else None, keypoint_weight=cfg.keypoint_weight,
                           images=end_to_end)
    log.info("%s the correlation network: %d pairs from %d categories, %d steps of %d pairs, device %s, %s%s",
             "fine-tuning" if finetune else "training", len(data), len(sources), cfg.steps, cfg.batch_size, dev,
             "end to end from images" if end_to_end else "head on the cached feature grids",
             ", keypoint-supervised" if cfg.keypoint_weight > 0 else "")
    if cfg.steps == 0 or len(data) == 0:
        if len(data) == 0 and not finetune:
            raise SopcorrError("siamese: no training pairs (check the flow stores)")
        if len(data) == 0:
            log.warning("no training-split pairs: the fine-tuned checkpoint is the trained one")
        history: list[float] = []
        spec = spec.replace(encoder_trained=end_to_end or bool(getattr(spec, "encoder_trained", False)))
        save_checkpoint(out_path, dict(model=model.state_dict(), spec=spec.to_dict(), step=0,
                                       config=dict(train=cfg.to_dict()), history=history))
    else:
        history = fit(model, data, cfg, out_path, device=dev, progress=progress,
                      extra=dict(pairs=len(data), init=str(init_checkpoint) if finetune else None),
                      salt="finetune" if finetune else "train")
    if loss_png is not None:
        plot_loss(history, loss_png, title=("Network fine-tuning loss" if finetune else "Network training loss"),
                  ylabel="InfoNCE + flow loss")
    return history
