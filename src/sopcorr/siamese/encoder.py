"""The shared encoder of both Siamese architectures: a backbone of the project's registry
(:func:`sopcorr.features.backbones.build_backbone`) applied to both images with the same
weights, and how a network with such an encoder trains (:class:`EncoderTraining`: which
parameters learn; the encoder's batch-norm statistics always stay frozen)."""
from __future__ import annotations

import torch.nn as nn


def build_encoder(name: str, input_size: int, layers, weights=None, device="cpu", pretrained: bool = True) -> nn.Module:
    """The backbone ``name`` at ``input_size`` returning ``layers`` (a
    :class:`~sopcorr.features.backbones.BackboneNet`: forward(x (B, 3, S, S)) -> {layer: (B, C_l,
    S / s_l, S / s_l)}), with ImageNet weights unless ``pretrained=False`` (a checkpoint's
    weights are loaded right after). An unused classifier (VGG16's 120M-parameter fully
    connected layers) is dropped to keep checkpoints small."""
    from ..features.backbones import build_backbone

    enc = build_backbone(name, input_size, layers=list(layers) if layers else None, weights=weights, device=device,
                         pretrained=pretrained)
    inner = getattr(enc, "model", None)
    if inner is not None and isinstance(getattr(inner, "classifier", None), nn.Module):
        inner.classifier = nn.Identity()
    return enc


def normalisation(encoder: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the encoder expects its [0, 1] RGB inputs normalised with (its backbone spec's;
    ImageNet's for an encoder without one)."""
    spec = getattr(encoder, "spec", None)
    if spec is not None and hasattr(spec, "mean"):
        return tuple(spec.mean), tuple(spec.std)
    from ..features.registry import IMAGENET_MEAN, IMAGENET_STD

    return IMAGENET_MEAN, IMAGENET_STD


class EncoderTraining:
    """Mixin of a network module with an ``encoder`` attribute (None: the network works on the
    encoder's output given by the caller)."""

    def trainable_parameters(self, freeze_encoder: bool):
        """Parameters to optimise (the encoder's are left out when frozen)."""
        for name, p in self.named_parameters():
            if freeze_encoder and name.startswith("encoder."):
                continue
            yield p

    def set_mode(self, training: bool, freeze_encoder: bool):
        """Train/eval mode. The encoder's batch-norm statistics stay frozen (eval mode) always:
        the pairs per batch are few and the statistics come from ImageNet."""
        self.train(training)
        if self.encoder is not None:
            self.encoder.eval()
            for p in self.encoder.parameters():
                p.requires_grad_(not freeze_encoder)
        return self
