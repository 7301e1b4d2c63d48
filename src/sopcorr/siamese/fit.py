"""Training of the correlation network (:mod:`sopcorr.siamese.correlation`) on teacher pairs.

One step: ``batch_size`` pairs drawn with the step's generator, each flipped left-right with
probability 1/2 (``flip``), both streams described by the head, correlated, and the loss

    L = dense InfoNCE (soft target of ``target_sigma`` cells, confidence-weighted, symmetric)
        + flow_weight * truncated Euclidean loss on the kernel soft-argmax read-out

(:mod:`sopcorr.siamese.losses`). With ``freeze_encoder`` (the CPU default) the inputs are the
cached encoder grids and only the head learns; otherwise the images go through the encoder
(batch-norm statistics frozen) and both learn, under mixed precision on CUDA. The loop, its
resumable checkpoints and its determinism are :mod:`sopcorr.siamese.loop`'s.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import SopcorrError
from .correlation import CorrelationNet, kernel_soft_argmax
from .grids import GridPairs, flip_batch
from .losses import dense_infonce, readout_flow_loss, sample_cells
from .loop import resolve_device, run_loop
from .model import truncation_T2
from .settings import FitConfig

log = logging.getLogger("sopcorr.siamese")


def network_loss(model: CorrelationNet, batch: dict, cfg: FitConfig, T2: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """The loss of one batch of grids (see :mod:`sopcorr.siamese.grids` for the layout) on
    ``cfg.cells_per_pair`` source cells per pair drawn with ``generator``."""
    spec = model.spec
    ds, dt = model.describe(batch["src"]), model.describe(batch["tgt"])
    hs, ws = ds.shape[-2:]
    ht, wt = dt.shape[-2:]
    vs, vt = batch["valid_src"].flatten(1), batch["valid_tgt"].flatten(1)
    target = batch["target"].flatten(1, 2)
    weight = batch["weight"].flatten(1)
    cells = sample_cells(weight, cfg.cells_per_pair, generator)
    target = target.gather(1, cells[..., None].expand(-1, -1, 2))
    weight = weight.gather(1, cells)
    loss, corr = dense_infonce(ds.flatten(2).transpose(1, 2), dt.flatten(2).transpose(1, 2), cells, target, weight,
                               (hs, ws), (ht, wt), vs, vt, spec.temperature, cfg.target_sigma, cfg.symmetric)
    if cfg.flow_weight > 0:
        pred, _ = kernel_soft_argmax(corr.float(), (ht, wt), vt, spec.temperature, spec.readout_sigma)
        loss = loss + cfg.flow_weight * readout_flow_loss(pred, target, weight, spec.stride, T2)
    return loss


def fit(model: CorrelationNet, data: GridPairs, cfg: FitConfig, out_path: str | Path, device="auto",
        progress: bool = True, resume: bool = True, stop_after: int | None = None, extra: dict | None = None,
        salt: str = "train") -> list[float]:
    """Train ``model`` on ``data`` for ``cfg.steps`` steps; the final checkpoint goes to
    ``out_path`` (its ``model`` is the head's state, plus the encoder's when it was trained).
    Returns the per-step losses."""
    dev = resolve_device(device) if isinstance(device, str) else device
    if len(data) == 0:
        raise SopcorrError("siamese: no training pairs (check the flow stores and the split)")
    end_to_end = not cfg.freeze_encoder
    if end_to_end and model.encoder is None:
        raise SopcorrError("siamese: freeze_encoder: false needs the network's encoder")
    if not end_to_end and model.encoder is not None:
        model.encoder = None  # the cached grids are the frozen encoder's output
    model.to(dev).set_mode(True, cfg.freeze_encoder)
    spec = model.spec.replace(encoder_trained=end_to_end)
    model.spec = spec
    T2 = truncation_T2(cfg.truncation, spec.input_size)
    use_amp = dev.type == "cuda"
    n = len(data)

    def step_loss(step: int, g: torch.Generator) -> torch.Tensor:
        idx = torch.randint(n, (cfg.batch_size,), generator=g).tolist()
        which = torch.rand(cfg.batch_size, generator=g) < 0.5 if cfg.flip else torch.zeros(cfg.batch_size, dtype=torch.bool)
        b = data.batch(idx, dev, images=end_to_end)
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
            if end_to_end:
                grids = model.encode(torch.cat([b["src"], b["tgt"]]))
                b["src"], b["tgt"] = grids[: len(idx)], grids[len(idx):]
            b = flip_batch(b, which)
            return network_loss(model, b, cfg, T2, g)

    record = dict(train=cfg.to_dict(), spec=spec.to_dict(), extra=extra or {}, salt=salt)
    return run_loop(model, list(model.trainable_parameters(cfg.freeze_encoder)), step_loss, cfg, out_path,
                    record, spec.to_dict(), dev, resume=resume, progress=progress, stop_after=stop_after,
                    salt=salt, desc="network")
