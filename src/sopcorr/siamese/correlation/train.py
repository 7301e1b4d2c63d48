"""The training step of the correlation network (``architecture: correlation``): its settings,
its loss and one optimisation step, over the shared loop (:mod:`sopcorr.siamese.loop`) and step
skeleton (:class:`sopcorr.siamese.step.TrainingStep`).

One step: ``batch_size`` pairs drawn with the step's generator, each flipped left-right with
probability 1/2 (``flip``), both streams described by the head, correlated, and the loss

    L = dense InfoNCE (soft target of ``target_sigma`` cells, confidence-weighted, symmetric)
        + flow_weight * truncated Euclidean loss on the kernel soft-argmax read-out

(:mod:`sopcorr.siamese.correlation.losses`), on the head's own descriptors and their plain
correlation: the network's read-out settings ``raw_weight``, ``consensus`` and ``mutual`` are not in
the loss (training through them was no better across categories, docs/RESULTS.md). With ``freeze_encoder`` (the CPU default) the inputs
are the cached encoder grids (:mod:`sopcorr.siamese.correlation.data`) and only the head learns;
otherwise the images go through the encoder (batch-norm statistics frozen) and both learn, under
mixed precision on CUDA.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from ...errors import SopcorrError
from ..checkpoint import CheckpointError
from ..loop import run_loop
from ..settings import LoopSettings, truncation_T2
from ..step import TrainingStep
from .data import GridPairs, flip_batch, load_grid_pairs
from .losses import dense_infonce, readout_flow_loss, sample_cells
from .net import CorrelationNet, kernel_soft_argmax


@dataclass(frozen=True)
class CorrelationSettings(LoopSettings):
    """Training settings of the correlation network (``siamese.correlation`` and the shared
    keys; the defaults are the schema's): :class:`~sopcorr.siamese.settings.LoopSettings`, plus
    cells_per_pair: source cells per pair in the loss, drawn among the teacher's matches
    (None: every cell); target_sigma: soft InfoNCE target, a Gaussian of this many cells around
    the teacher's cell (0: the hard one-hot target); symmetric: add the reverse direction of the
    InfoNCE; flow_weight: weight of the truncated Euclidean loss on the read-out (0: off);
    flip: joint horizontal flips of both grids (augmentation). ``freeze_encoder``: train the
    head on cached encoder grids (True) or the encoder too, from images (False)."""

    cells_per_pair: int | None = 256
    target_sigma: float = 1.0
    symmetric: bool = True
    flow_weight: float = 1.0
    flip: bool = True

    SECTION: ClassVar[str] = "correlation"


def network_spec(section: dict, backbone: dict, feature_attrs: dict, channels: int):
    """NetworkSpec from the sections ``siamese`` and ``backbone`` and a feature store's attrs and
    channel count (the encoder's layers, input size, stride and ReLU setting: the cached grids')."""
    from ...errors import ConfigError
    from .net import NetworkSpec

    c = section["correlation"]
    if feature_attrs.get("backbone") != backbone["name"]:
        raise ConfigError(f"config error: backbone.name: {backbone['name']!r}, but the feature stores were "
                          f"extracted with {feature_attrs.get('backbone')!r}")
    return NetworkSpec(backbone=backbone["name"], input_size=int(feature_attrs["input_size"]),
                       layers=tuple(feature_attrs["layers"]), relu=bool(feature_attrs["relu"]),
                       in_channels=int(channels), stride=int(feature_attrs["stride"]),
                       hidden_channels=int(c["hidden_channels"]), descriptor_dim=int(c["descriptor_dim"]),
                       kernel_size=int(c["kernel_size"]), temperature=float(c["temperature"]),
                       readout_sigma=float(c["readout_sigma"]),
                       reduce_first=bool(c["reduce_first"]), weights=backbone.get("weights"),
                       raw_weight=float(c["raw_weight"]), consensus=float(c["consensus"]),
                       mutual=bool(c["mutual"]))


def network_loss(model: CorrelationNet, batch: dict, cfg: CorrelationSettings, T2: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """The loss of one batch of grids (see :mod:`sopcorr.siamese.correlation.data` for the
    layout) on ``cfg.cells_per_pair`` source cells per pair drawn with ``generator``."""
    spec = model.spec
    ds, dt = model.head(batch["src"]), model.head(batch["tgt"])  # the head alone: raw_weight and the
    # consensus are read-out settings (training through them was no better across categories)
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


def fit(model: CorrelationNet, data: GridPairs, cfg: CorrelationSettings, out_path: str | Path, device="auto",
        progress: bool = True, resume: bool = True, stop_after: int | None = None, extra: dict | None = None,
        salt: str = "train") -> list[float]:
    """Train ``model`` on ``data`` for ``cfg.steps`` steps; the final checkpoint goes to
    ``out_path`` (its ``model`` is the head's state, plus the encoder's when it was trained).
    Returns the per-step losses."""
    from ...device import resolve_device

    dev = resolve_device(device) if isinstance(device, str) else device
    if len(data) == 0:
        raise SopcorrError("siamese: no training pairs (check the flow stores and the split)")
    end_to_end = not cfg.freeze_encoder
    if end_to_end and model.encoder is None:
        raise SopcorrError("siamese: freeze_encoder: false needs the network's encoder")
    if not end_to_end and model.encoder is not None:
        model.encoder = None  # the cached grids are the frozen encoder's output
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

    return run_loop(model, step_loss, cfg, out_path, spec.to_dict(), dev, extra=extra, salt=salt, resume=resume,
                    progress=progress, stop_after=stop_after, desc="network")


class CorrelationTraining(TrainingStep):
    """The ``train_siamese`` / ``finetune_siamese`` step of ``architecture: correlation``: the
    network's encoder is the feature stage's backbone at its layers and input size (read from the
    first feature store); with ``freeze_encoder`` its head trains on the cached grids, otherwise
    the whole network on the images."""

    architecture = "correlation"
    settings_class = CorrelationSettings
    titles = ("Network training loss", "Network fine-tuning loss")
    ylabel = "InfoNCE + flow loss"

    def new_model(self, section, backbone, cfg, device, sources):
        from ...features.store import FeatureStore
        from .net import build_network

        first = FeatureStore.open(sources[0][0])
        spec = network_spec(section, backbone, first.attrs, first.shape[-1])
        return build_network(spec, device=device, with_encoder=not cfg.freeze_encoder)

    def load_encoder(self, cfg) -> bool:
        return not cfg.freeze_encoder

    def check_checkpoint(self, ck, model, cfg, sources) -> None:
        from ...features.store import FeatureStore

        spec, first = model.spec, FeatureStore.open(sources[0][0])
        if spec.encoder_trained and cfg.freeze_encoder:
            raise CheckpointError(f"{ck.path}: its encoder was trained end to end; fine-tune it with "
                                  f"siamese.freeze_encoder: false (the cached grids are the untrained encoder's)")
        if (spec.input_size, tuple(spec.layers)) != (first.input_size, tuple(first.attrs["layers"])):
            raise CheckpointError(f"{ck.path}: trained on {spec.input_size} px grids of layers "
                                  f"{list(spec.layers)}, the features are {first.input_size} px of {first.attrs['layers']}")

    def training_data(self, sources, model, cfg, finetune, min_confirmations: int = 0):
        return load_grid_pairs(sources, split="train" if finetune else None, keypoint_weight=cfg.keypoint_weight,
                               images=not cfg.freeze_encoder, min_confirmations=min_confirmations)

    def fit(self, model, data, cfg, out_path, device, progress, extra, salt):
        return fit(model, data, cfg, out_path, device=device, progress=progress, extra=extra, salt=salt)

    def checkpoint_spec(self, model, cfg) -> dict:
        return model.spec.replace(encoder_trained=not cfg.freeze_encoder or model.spec.encoder_trained).to_dict()

    def describe(self, cfg) -> str:
        return "end to end from images" if not cfg.freeze_encoder else "head on the cached feature grids"
