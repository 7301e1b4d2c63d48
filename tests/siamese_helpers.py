"""Helpers of the Siamese tests (a module, no tests here): a tiny stand-in encoder for the
paper's network (registered as backbone 'tiny_test'), a tiny network built on it, and
in-memory training pairs."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from sopcorr.siamese.paper import net as paper_net
from sopcorr.siamese.paper.data import keypoint_pair
from sopcorr.siamese.paper.net import ModelSpec, build_model

#: backbone name -> factory(input_size, layers, weights, device, pretrained) of a stand-in encoder
ENCODERS: dict = {}
_REGISTRY_ENCODER = paper_net.encoder_for


def _encoder_for(spec, device="cpu", weights=None, pretrained=True):
    factory = ENCODERS.get(spec.backbone)
    if factory is None:
        return _REGISTRY_ENCODER(spec, device=device, weights=weights, pretrained=pretrained)
    return factory(input_size=spec.input_size, layers=spec.encoder_layers, weights=weights, device=device,
                   pretrained=pretrained)


def register_encoder(name: str, factory) -> None:
    """Make backbone ``name`` build ``factory(input_size, layers, weights, device, pretrained)`` as
    the paper network's encoder in this test process (every other name still builds from the
    backbone registry): :func:`sopcorr.siamese.paper.net.encoder_for` is replaced by a lookup
    here first."""
    ENCODERS[name] = factory
    paper_net.encoder_for = _encoder_for


class TinyEncoder(nn.Module):
    """Two conv stages: 'a' at stride 2 (8 channels), 'b' at stride 4 (12 channels)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.ReLU())
        self.strides = {"a": 2, "b": 4}
        self.channels = {"a": 8, "b": 12}

    def forward(self, x):
        a = self.a(x)
        return {"a": a, "b": self.b(a)}


def _factory(input_size, layers=None, weights=None, device="cpu", pretrained=True):
    torch.manual_seed(123)  # the "pretrained" weights of the stand-in
    return TinyEncoder().to(device)


register_encoder("tiny_test", _factory)


def tiny_model(size=32, seed=0):
    torch.manual_seed(seed)
    return build_model(ModelSpec("tiny_test", size, fuse_channels=16, decoder_channels=8))


@dataclass
class TensorPairs:
    """In-memory training pairs of the paper's network (a
    :class:`~sopcorr.siamese.paper.data.PairSource`): images (N,3,S,S), pairs (P,2) image
    indices, flows (P,2,S,S), valid (P,S,S); optional keypoints (N,K,3) input-pixel
    (x, y, visible) per image."""

    images: torch.Tensor
    pairs: torch.Tensor
    flows: torch.Tensor
    valid: torch.Tensor
    keypoints: torch.Tensor | None = None
    size: int = field(init=False)

    def __post_init__(self):
        self.size = int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.pairs.shape[0])

    def get(self, i: int) -> dict:
        a, b = (int(v) for v in self.pairs[i])
        out = dict(src=self.images[a].float(), tgt=self.images[b].float(), flow=self.flows[i].float(),
                   valid=self.valid[i].bool())
        if self.keypoints is not None:
            out.update(keypoint_pair(self.keypoints[a], self.keypoints[b]))
        return out
