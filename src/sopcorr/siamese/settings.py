"""The config section ``siamese`` turned into typed settings, once, at the edge; the names of
the architectures. Plain data, no torch: the Snakefile's parse reads :data:`ARCHITECTURES`.

The section is symmetric: ``siamese.paper.*`` holds the paper network's keys and
``siamese.correlation.*`` the correlation network's (steps, batch size, learning rates,
fine-tuning, ...); the keys both share stay at ``siamese.*`` (:data:`SHARED_KEYS`). Each
architecture's settings class (:class:`~sopcorr.siamese.paper.train.PaperSettings`,
:class:`~sopcorr.siamese.correlation.train.CorrelationSettings`) extends
:class:`LoopSettings`, what the shared loop (:mod:`sopcorr.siamese.loop`) reads, and is built
from the section by :meth:`LoopSettings.from_section`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import ClassVar

from ..errors import ConfigError, SopcorrError

#: the Siamese architectures (``siamese.architecture``), each a sub-package of sopcorr.siamese
#: and a sub-section of the config section: the paper's flow network and the correlation network
ARCHITECTURES = ("paper", "correlation")
#: the keys of ``siamese`` both architectures read (the rest live in ``siamese.<architecture>``)
SHARED_KEYS = ("architecture", "device", "checkpoint_every", "freeze_encoder", "keypoint_supervision",
               "keypoint_weight", "grad_clip", "rounds", "round_teacher", "round_start",
               "round_interpolation")


def architecture(section: dict) -> str:
    """The section's ``architecture`` (ConfigError for an unknown one)."""
    arch = section.get("architecture", "correlation")
    if arch not in ARCHITECTURES:
        raise ConfigError(f"config error: siamese.architecture: unknown {arch!r} (expected {', '.join(ARCHITECTURES)})")
    return arch


def truncation_T2(truncation, long_edge: int) -> float:
    """T^2 of a truncated Euclidean loss: ``'paper'`` -> the long edge in pixels (paper Eq. 10,
    T = sqrt(edge)); a number f -> (f * long edge)^2 (T a fraction of the image)."""
    if truncation in (None, "paper"):
        return float(long_edge)
    try:
        f = float(truncation)
    except (TypeError, ValueError):
        raise SopcorrError(f"siamese truncation: expected 'paper' or a positive number, got {truncation!r}") from None
    if not f > 0:
        raise SopcorrError(f"siamese truncation: must be positive, got {truncation!r}")
    return (f * long_edge) ** 2


_CASTS = {"int": int, "float": float, "bool": bool, "tuple[float, float]": lambda v: tuple(float(x) for x in v)}


def _cast(annotation: str, value):
    """``value`` as the field type ``annotation`` says (plain types; optional ones pass as they are)."""
    cast = _CASTS.get(str(annotation))
    return cast(value) if cast is not None else value


@dataclass(frozen=True)
class LoopSettings:
    """What the shared optimisation loop reads (:func:`sopcorr.siamese.loop.run_loop`).

    steps: optimiser steps; batch_size: pairs per step; lr, weight_decay: AdamW; warmup:
    warm-up steps (None: min(100, steps // 10)); min_lr_ratio: cosine floor; grad_clip: max
    gradient norm (0: off); checkpoint_every: steps between resumable states; seed: base seed;
    truncation: the flow loss's T ('paper': T^2 = the long input edge in pixels; f: T = f x the
    edge); freeze_encoder: keep the encoder's weights fixed; keypoint_weight: weight of the
    keypoint supervision (fine-tuning with ``keypoint_supervision``; 0 otherwise).
    """

    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int | None = None
    min_lr_ratio: float = 0.05
    grad_clip: float = 10.0
    checkpoint_every: int = 50
    seed: int = 0
    truncation: str | float = "paper"
    freeze_encoder: bool = True
    keypoint_weight: float = 0.0

    #: the config sub-section of the architecture's own keys (``siamese.<SECTION>``)
    SECTION: ClassVar[str] = ""

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def warmup_steps(self) -> int:
        return self.warmup if self.warmup is not None else min(100, self.steps // 10)

    def replace(self, **kw) -> "LoopSettings":
        return replace(self, **kw)

    @classmethod
    def from_section(cls, section: dict, seed: int, finetune: bool = False) -> "LoopSettings":
        """The settings of the config section ``siamese`` (``section[cls.SECTION]`` and the shared
        keys); ``finetune``: the ``finetune_steps`` / ``finetune_lr`` values and, with
        ``keypoint_supervision``, ``keypoint_weight``."""
        own = dict(section[cls.SECTION])
        if finetune:
            own["steps"], own["lr"] = own["finetune_steps"], own["finetune_lr"]
        kw = {f.name: _cast(f.type, own[f.name]) for f in fields(cls) if f.name in own}
        keypoints = finetune and bool(section.get("keypoint_supervision", False))
        return cls(**kw, grad_clip=float(section["grad_clip"]), checkpoint_every=int(section["checkpoint_every"]),
                   seed=int(seed), freeze_encoder=bool(section["freeze_encoder"]),
                   keypoint_weight=float(section["keypoint_weight"]) if keypoints else 0.0)
