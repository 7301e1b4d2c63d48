"""The config section ``siamese`` turned into typed settings, once, at the edge.

* ``architecture: paper`` (:class:`TrainConfig`, :class:`~sopcorr.siamese.model.ModelSpec`): the
  paper's flow-regressing network; its keys are the section's top-level ones (``input_size``,
  ``steps``, ``lr``, ``truncation``, ...).
* ``architecture: correlation`` (:class:`FitConfig`, :class:`~sopcorr.siamese.correlation.NetworkSpec`):
  the correlation network; its keys live in ``siamese.correlation``; the encoder is the feature
  stage's (``backbone`` section and the feature store's layers / input size).

Shared keys: ``architecture``, ``device``, ``freeze_encoder``, ``checkpoint_every``,
``keypoint_supervision``, ``keypoint_weight``, ``grad_clip``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import ConfigError
from .model import ModelSpec

ARCHITECTURES = ("correlation", "paper")


@dataclass
class TrainConfig:
    """Training settings of the paper's network (config section ``siamese``; fine-tuning uses
    the finetune_* values).

    steps: optimiser steps; batch_size: pairs per step; lr, weight_decay: AdamW;
    warmup: warm-up steps (None: min(100, steps // 10)); min_lr_ratio: cosine floor;
    rotation_deg, scale_range: augmentation (rotation_deg 0 and scale_range (1, 1) disable it);
    augment: apply augmentation at all; checkpoint_every: steps between resumable states;
    seed: base seed; truncation: 'paper' (T^2 = long edge in pixels) or a fraction f (T = f x long edge);
    keypoint_weight: weight of the sparse keypoint term (used only when pairs carry keypoints);
    freeze_encoder: keep the encoder's weights fixed; grad_clip: max gradient norm (0: off).
    """

    steps: int = 150
    batch_size: int = 4
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup: int | None = None
    min_lr_ratio: float = 0.05
    rotation_deg: float = 16.0
    scale_range: tuple[float, float] = (0.9, 2.0)
    augment: bool = True
    checkpoint_every: int = 50
    seed: int = 0
    truncation: str | float = "paper"
    keypoint_weight: float = 1.0
    freeze_encoder: bool = True
    grad_clip: float = 10.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scale_range"] = list(self.scale_range)
        return d

    @property
    def warmup_steps(self) -> int:
        return self.warmup if self.warmup is not None else min(100, self.steps // 10)


@dataclass(frozen=True)
class FitConfig:
    """Training settings of the correlation network (``siamese.correlation`` and the shared keys).

    steps, batch_size, lr, weight_decay, warmup (None: min(100, steps // 10)), min_lr_ratio,
    grad_clip, checkpoint_every, seed: the optimisation (:mod:`sopcorr.siamese.loop`);
    cells_per_pair: source cells per pair in the loss, drawn among the teacher's matches
    (None: every cell);
    target_sigma: soft InfoNCE target, a Gaussian of this many cells around the teacher's cell
    (0: the hard one-hot target); symmetric: add the reverse direction of the InfoNCE;
    flow_weight: weight of the truncated Euclidean loss on the read-out (0: off);
    truncation: its T ('paper': T^2 = the input's long edge in pixels; f: T = f x the edge);
    flip: joint horizontal flips of both grids (augmentation); freeze_encoder: train the head on
    cached encoder grids (True) or the encoder too, from images (False);
    keypoint_weight: weight of the keypoint-supervised cells (fine-tuning with
    keypoint_supervision; 0 otherwise).
    """

    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int | None = None
    min_lr_ratio: float = 0.05
    grad_clip: float = 10.0
    checkpoint_every: int = 500
    seed: int = 0
    cells_per_pair: int | None = 256
    target_sigma: float = 1.0
    symmetric: bool = True
    flow_weight: float = 1.0
    truncation: str | float = "paper"
    flip: bool = True
    freeze_encoder: bool = True
    keypoint_weight: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def warmup_steps(self) -> int:
        return self.warmup if self.warmup is not None else min(100, self.steps // 10)

    def replace(self, **kw) -> "FitConfig":
        d = self.to_dict()
        d.update(kw)
        return FitConfig(**d)


def architecture(section: dict) -> str:
    """The section's ``architecture`` (ConfigError for an unknown one)."""
    arch = section.get("architecture", "correlation")
    if arch not in ARCHITECTURES:
        raise ConfigError(f"config error: siamese.architecture: unknown {arch!r} (expected {', '.join(ARCHITECTURES)})")
    return arch


def train_config(section: dict, seed: int, finetune: bool = False) -> TrainConfig:
    """TrainConfig of the paper's network from the config section ``siamese`` (``finetune``:
    the finetune_* values)."""
    steps = int(section["finetune_steps"] if finetune else section["steps"])
    return TrainConfig(
        steps=steps, batch_size=int(section["batch_size"]),
        lr=float(section["finetune_lr"] if finetune else section["lr"]),
        weight_decay=float(section["weight_decay"]), warmup=section.get("warmup"),
        rotation_deg=float(section["rotation_deg"]), scale_range=tuple(float(v) for v in section["scale_range"]),
        checkpoint_every=int(section["checkpoint_every"]), seed=int(seed),
        truncation=section.get("truncation", "paper"),
        keypoint_weight=float(section.get("keypoint_weight", 1.0)) if (finetune and section.get("keypoint_supervision")) else 0.0,
        freeze_encoder=bool(section["freeze_encoder"]), grad_clip=float(section.get("grad_clip", 10.0)))


def model_spec(section: dict, backbone: dict) -> ModelSpec:
    """ModelSpec of the paper's network from the config sections ``siamese`` and ``backbone``."""
    return ModelSpec(backbone=backbone["name"], input_size=int(section["input_size"]),
                     encoder_layers=section.get("encoder_layers"),
                     fuse_channels=int(section.get("fuse_channels", 128)),
                     decoder_channels=int(section.get("decoder_channels", 64)))


def fit_config(section: dict, seed: int, finetune: bool = False) -> FitConfig:
    """FitConfig of the correlation network from the config section ``siamese``."""
    c = section["correlation"]
    keypoints = finetune and bool(section.get("keypoint_supervision", False))
    return FitConfig(
        steps=int(c["finetune_steps"] if finetune else c["steps"]), batch_size=int(c["batch_size"]),
        lr=float(c["finetune_lr"] if finetune else c["lr"]), weight_decay=float(c["weight_decay"]),
        warmup=c["warmup"], grad_clip=float(section["grad_clip"]),
        checkpoint_every=int(section["checkpoint_every"]), seed=int(seed),
        cells_per_pair=c["cells_per_pair"], target_sigma=float(c["target_sigma"]), symmetric=bool(c["symmetric"]),
        flow_weight=float(c["flow_weight"]), truncation=c["truncation"], flip=bool(c["flip"]),
        freeze_encoder=bool(section["freeze_encoder"]),
        keypoint_weight=float(section["keypoint_weight"]) if keypoints else 0.0)


def network_spec(section: dict, backbone: dict, feature_attrs: dict, channels: int):
    """NetworkSpec from the sections ``siamese`` and ``backbone`` and a feature store's attrs and
    channel count (the encoder's layers, input size, stride and ReLU setting: the cached grids')."""
    from .correlation import NetworkSpec

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
                       reduce_first=bool(c["reduce_first"]), weights=backbone.get("weights"))
