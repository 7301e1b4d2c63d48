"""The training step of the paper's network (``architecture: paper``): its settings, its loss
and one optimisation step, over the shared loop (:mod:`sopcorr.siamese.loop`) and step skeleton
(:class:`sopcorr.siamese.step.TrainingStep`).

* Data: :class:`~sopcorr.siamese.paper.data.StorePairs` (images at ``siamese.paper.input_size``,
  the teacher's flows upsampled to it); each pair is augmented with random similarities
  (:mod:`sopcorr.siamese.paper.augment`).
* Loss: the truncated Euclidean flow loss (paper Eq. 10), plus the sparse keypoint term when the
  pairs carry keypoints (fine-tuning with keypoint supervision).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from ...errors import SopcorrError
from ..loop import run_loop
from ..settings import LoopSettings, truncation_T2
from ..step import TrainingStep
from .augment import augment_batch
from .data import PairSource, StorePairs, collate
from .net import ModelSpec, SiameseFlowNet, truncated_euclidean_loss


@dataclass(frozen=True)
class PaperSettings(LoopSettings):
    """Training settings of the paper's network (``siamese.paper`` and the shared keys; the
    defaults are the schema's): :class:`~sopcorr.siamese.settings.LoopSettings`, plus
    rotation_deg, scale_range: the augmentation (rotation_deg 0 and scale_range (1, 1) disable
    it); augment: apply it at all."""

    steps: int = 150
    batch_size: int = 4
    lr: float = 2e-3
    truncation: str | float = 0.5
    rotation_deg: float = 16.0
    scale_range: tuple[float, float] = (0.9, 2.0)
    augment: bool = True

    SECTION: ClassVar[str] = "paper"


def model_spec(section: dict, backbone: dict) -> ModelSpec:
    """ModelSpec of the paper's network from the config sections ``siamese`` and ``backbone``."""
    own = section["paper"]
    return ModelSpec(backbone=backbone["name"], input_size=int(own["input_size"]), encoder_layers=own["encoder_layers"],
                     fuse_channels=int(own["fuse_channels"]), decoder_channels=int(own["decoder_channels"]))


def keypoint_loss(flow: torch.Tensor, kp_src: torch.Tensor, kp_tgt: torch.Tensor, vis: torch.Tensor,
                  T2: float) -> torch.Tensor:
    """Sparse term: flow (B,2,S,S) sampled bilinearly at kp_src (B,K,2) should equal kp_tgt - kp_src;
    truncated squared error averaged over visible keypoints vis (B,K)."""
    S = flow.shape[-1]
    g = ((2 * kp_src + 1) / S - 1)[:, :, None, :].to(flow.dtype)  # (B,K,1,2)
    f = F.grid_sample(flow, g, mode="bilinear", align_corners=False)[..., 0].permute(0, 2, 1)  # (B,K,2)
    d2 = ((f.float() - (kp_tgt - kp_src).float()) ** 2).sum(-1).clamp(max=float(T2))
    v = vis.float()
    return (d2 * v).sum() / v.sum().clamp(min=1.0)


def train(model: SiameseFlowNet, data: PairSource, cfg: PaperSettings, out_path: str | Path,
          state_path: str | Path | None = None, device="auto", resume: bool = True, progress: bool = True,
          stop_after: int | None = None, extra: dict | None = None, salt: str = "train") -> list[float]:
    """Train ``model`` on ``data`` for ``cfg.steps`` steps; write the final checkpoint to
    ``out_path``. Returns the per-step losses (whole run, resumed steps included). One step:
    ``batch_size`` pairs drawn with the step's generator, augmented, the flow predicted and the
    truncated Euclidean loss (+ the keypoint term).

    state_path, resume, stop_after, extra, salt: as :func:`sopcorr.siamese.loop.run_loop`.
    """
    from ...device import resolve_device

    dev = resolve_device(device) if isinstance(device, str) else device
    if len(data) == 0:
        raise SopcorrError("siamese: no training pairs (check the flow stores and the split)")
    use_amp = dev.type == "cuda"
    T2 = truncation_T2(cfg.truncation, data.size)
    n = len(data)

    def step_loss(step: int, g: torch.Generator) -> torch.Tensor:
        idx = torch.randint(n, (cfg.batch_size,), generator=g).tolist()
        b = collate([data.get(i) for i in idx], dev)
        kp = b.get("kp")
        if cfg.augment:
            src, tgt, flow, valid, kp = augment_batch(b["src"], b["tgt"], b["flow"], b["valid"], g,
                                                      cfg.rotation_deg, cfg.scale_range, kp)
        else:
            src, tgt, flow, valid = b["src"], b["tgt"], b["flow"], b["valid"]
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
            pred = model(src, tgt)
        loss = truncated_euclidean_loss(pred.float(), flow, valid, T2=T2)
        if kp is not None and cfg.keypoint_weight > 0:
            loss = loss + cfg.keypoint_weight * keypoint_loss(pred.float(), *kp, T2=T2)
        return loss

    spec = model.spec.to_dict() if model.spec else None
    return run_loop(model, step_loss, cfg, out_path, spec, dev, extra=extra, salt=salt, state_path=state_path,
                    resume=resume, progress=progress, stop_after=stop_after)


class PaperTraining(TrainingStep):
    """The ``train_siamese`` / ``finetune_siamese`` step of ``architecture: paper``: a new
    network (the configured backbone with ImageNet weights) trained on every teacher pair, or a
    trained one fine-tuned on the pairs of the keypoint training split (with the sparse
    keypoint term under ``keypoint_supervision``)."""

    architecture = "paper"
    settings_class = PaperSettings
    titles = ("Siamese training loss", "Siamese fine-tuning loss")

    def new_model(self, section, backbone, cfg, device, sources):
        from .net import build_model

        return build_model(model_spec(section, backbone), device=device, weights=backbone.get("weights"))

    def training_data(self, sources, model, cfg, finetune, min_confirmations: int = 0):
        from ...errors import SopcorrError
        from ..encoder import normalisation

        if min_confirmations > 0:  # the rules pass flow.cycle_min to the correlation network only
            raise SopcorrError("the paper's flow network trains on every valid cell (flow.cycle_min is the "
                               "correlation network's)")
        mean, std = normalisation(model.encoder)
        return StorePairs([(f, i) for _, f, i in sources], model.spec.input_size, mean, std,
                          split="train" if finetune else None, keypoints=finetune and cfg.keypoint_weight > 0)

    def fit(self, model, data, cfg, out_path, device, progress, extra, salt):
        return train(model, data, cfg, out_path, device=device, progress=progress, extra=extra, salt=salt)

    def describe(self, cfg) -> str:
        return "encoder " + ("frozen" if cfg.freeze_encoder else "trained")
