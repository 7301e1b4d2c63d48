"""The step skeleton both architectures share (rules ``train_siamese`` and ``finetune_siamese``):
:meth:`TrainingStep.run`. Each architecture's training step (``sopcorr.siamese.paper.train``,
``sopcorr.siamese.correlation.train``) subclasses :class:`TrainingStep` and fills in its model,
its training data and its optimisation step; the skeleton does the rest the same way for both:

1. settings from the config section (``siamese.<architecture>`` and the shared keys);
2. training: a new network (torch seeded with ``seed``); fine-tuning: the given checkpoint,
   checked to be of this architecture and backbone;
3. the training data (fine-tuning: only pairs whose both images are in the keypoint training
   split; without ``keypoint_supervision`` no labels are used, weakly supervised);
4. the optimisation (:mod:`sopcorr.siamese.loop`), or with no steps (or no fine-tuning pairs)
   the network as it is, in the same checkpoint format (:mod:`sopcorr.siamese.checkpoint`);
5. the loss curve.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import SopcorrError
from .checkpoint import CheckpointError, model_from_checkpoint, read_checkpoint, save_checkpoint
from .plots import plot_loss

log = logging.getLogger("sopcorr.siamese")


class TrainingStep:
    """One architecture's training step (see the module docstring). Subclasses set
    ``architecture``, ``settings_class`` (a :class:`~sopcorr.siamese.settings.LoopSettings`),
    ``titles`` (the loss plots' of training and fine-tuning) and ``ylabel``, and implement
    :meth:`new_model`, :meth:`training_data`, :meth:`fit` (and, where they need them,
    :meth:`check_checkpoint`, :meth:`load_encoder`, :meth:`checkpoint_spec`, :meth:`describe`).

    ``sources``: per category (features zarr, flow zarr, instances.json)."""

    architecture: str = ""
    settings_class = None
    titles = ("training loss", "fine-tuning loss")
    ylabel = "loss"

    # ------------------------------------------------------------------ hooks
    def new_model(self, section: dict, backbone: dict, cfg, device, sources):
        """A new network (torch is already seeded) from the config sections ``siamese`` and
        ``backbone``."""
        raise NotImplementedError

    def training_data(self, sources, model, cfg, finetune: bool, min_confirmations: int = 0):
        """The training pairs (``len()``, ``fingerprint()``); fine-tuning: the training split's;
        ``min_confirmations``: only the teacher's cells that many hubs confirm (``flow.cycle_min``)."""
        raise NotImplementedError

    def fit(self, model, data, cfg, out_path, device, progress: bool, extra: dict, salt: str) -> list[float]:
        """Optimise ``model`` for ``cfg.steps`` steps (the shared loop); the per-step losses."""
        raise NotImplementedError

    def load_encoder(self, cfg) -> bool:
        """Whether fine-tuning rebuilds the checkpoint's encoder (``with_encoder``)."""
        return True

    def check_checkpoint(self, ck, model, cfg, sources) -> None:
        """Architecture-specific checks of a checkpoint to fine-tune (CheckpointError)."""

    def checkpoint_spec(self, model, cfg) -> dict:
        """The spec a checkpoint written without optimisation records."""
        return model.spec.to_dict()

    def describe(self, cfg) -> str:
        """What trains, for the log."""
        return ""

    # ------------------------------------------------------------------ the skeleton
    def run(self, sources, section: dict, backbone: dict, seed: int, out_path: str | Path,
            loss_png: str | Path | None = None, init_checkpoint: str | Path | None = None,
            progress: bool = True, start_from: str | Path | None = None,
            min_confirmations: int = 0, interpolation: float = 1.0) -> list[float]:
        """Train (``init_checkpoint`` None) or fine-tune; write the checkpoint to ``out_path`` and
        the loss curve to ``loss_png``; return the per-step losses. ``start_from``: a checkpoint
        whose weights a training (not a fine-tuning) starts from instead of a new network (a
        self-training round that continues the round before's head); ``min_confirmations``: train
        on the teacher's cells confirmed by at least that many hubs (``flow.cycle_min``);
        ``interpolation``: with ``start_from``, the written network is that fraction of the way
        from ``start_from``'s weights to the trained ones (``siamese.round_interpolation``,
        :mod:`sopcorr.siamese.interpolate`; 1: the trained weights)."""
        from ..device import resolve_device

        finetune = init_checkpoint is not None
        if finetune and start_from is not None:
            raise SopcorrError("run_training: give init_checkpoint (fine-tuning) or start_from (training), not both")
        cfg = self.settings_class.from_section(section, seed, finetune=finetune)
        dev = resolve_device(section["device"])
        init = init_checkpoint if finetune else start_from
        if init is not None:
            ck = read_checkpoint(init)
            if ck.architecture != self.architecture:
                raise CheckpointError(f"{init}: a '{ck.architecture}' network, the config asks for "
                                      f"siamese.architecture: {self.architecture}")
            if ck.spec.backbone != backbone["name"]:
                raise CheckpointError(f"{init}: trained with backbone '{ck.spec.backbone}', "
                                      f"the config asks for '{backbone['name']}'")
            model = model_from_checkpoint(ck, device=dev, with_encoder=self.load_encoder(cfg))
            self.check_checkpoint(ck, model, cfg, sources)
        else:
            torch.manual_seed(cfg.seed)
            model = self.new_model(section, backbone, cfg, dev, sources)
        data = self.training_data(sources, model, cfg, finetune, min_confirmations=min_confirmations)
        log.info("%s the %s network: %d pairs from %d categories, %d steps of %d pairs, device %s, %s%s",
                 "fine-tuning" if finetune else "training", self.architecture, len(data), len(sources), cfg.steps,
                 cfg.batch_size, dev, self.describe(cfg), ", keypoint-supervised" if cfg.keypoint_weight > 0 else "")
        if len(data) == 0 and not finetune:
            raise SopcorrError("siamese: no training pairs (check the flow stores)")
        if cfg.steps == 0 or len(data) == 0:
            if len(data) == 0:
                log.warning("no training-split pairs: the fine-tuned checkpoint is the trained one")
            history: list[float] = []
            save_checkpoint(out_path, dict(model=model.state_dict(), spec=self.checkpoint_spec(model, cfg), step=0,
                                           config=dict(train=cfg.to_dict()), history=history))
        else:
            extra = dict(data=data.fingerprint(), init=str(init) if init is not None else None)
            history = self.fit(model, data, cfg, out_path, dev, progress, extra, "finetune" if finetune else "train")
        if start_from is not None:
            from .interpolate import interpolate_checkpoint

            interpolate_checkpoint(out_path, start_from, interpolation)
        if loss_png is not None:
            plot_loss(history, loss_png, title=self.titles[finetune], ylabel=self.ylabel)
        return history
