"""A tiny stand-in encoder for the Siamese tests (registered as 'tiny_test'); no tests here."""
import torch
import torch.nn as nn

from sopcorr.siamese.model import ModelSpec, build_model, register_encoder


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
