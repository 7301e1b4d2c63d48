"""The paper's Siamese flow network (``siamese.architecture: paper``), its truncated Euclidean
loss and its checkpoint record.

Architecture (paper section 5, Fig. 5; FCN-8 style decoder):

* **shared encoder**: the configured backbone (``sopcorr.features.backbones``), applied to the
  source and the target image with the same weights; its maps at several strides
  (e.g. 8, 16, 32) are used.
* **fusion**: the two streams' coarsest maps are stacked (concatenated along channels) and
  fused by fully convolutional layers -- the paper's last fully connected layer made
  convolutional (3x3 conv + ReLU + 1x1 conv + ReLU).
* **decoder**: transposed convolutions (kernel 4, stride 2) upsample step by step; at each
  finer encoder stride the two streams' maps at that stride are concatenated, projected by a
  1x1 conv and concatenated with the upsampled decoder map (skip connection), then a 3x3 conv.
  A 3x3 conv predicts the flow at the finest encoder stride and a learnable transposed
  convolution initialised to bilinear interpolation (as in FCN-8) brings it to input
  resolution.
* **output**: ``(B, 2, S, S)`` flow in input pixels: ``flow[:, :, y, x] = (dx, dy)`` maps source
  input pixel (x, y) to target input pixel (x + dx, y + dy). The last layer is zero-initialised,
  so an untrained network predicts the zero flow.

The loss (paper Eq. 10) is ``sum_p min(||F~(p) - F(p)||^2, T^2)`` over valid pixels with
``T^2`` = the long edge of the image in pixels (the input size ``S``, images being letterboxed
into ``S x S``). For the optimiser we divide it by the number of valid pixels (a per-pixel mean;
the minimiser is unchanged, the learning rate no longer depends on image size or mask area).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import SopcorrError
from ..encoder import EncoderTraining, build_encoder


def encoder_for(spec: "ModelSpec", device="cpu", weights=None, pretrained: bool = True) -> nn.Module:
    """The shared encoder of ``spec`` (:func:`sopcorr.siamese.encoder.build_encoder`) at the
    layers ``spec.encoder_layers`` (None: the backbone registry's Siamese layers, strides
    8/16/32 on EfficientNet-Lite, :func:`sopcorr.features.registry.siamese_encoder_layers`)."""
    from ...features.registry import siamese_encoder_layers

    layers = spec.encoder_layers or siamese_encoder_layers(spec.backbone)
    return build_encoder(spec.backbone, spec.input_size, layers, weights=weights, device=device, pretrained=pretrained)


# --------------------------------------------------------------------------- model record


@dataclass
class ModelSpec:
    """What a checkpoint records to rebuild the network.

    backbone:         encoder name (``efficientnet_lite0``, ``vgg16``, ...)
    input_size:       S, the letterboxed input side in pixels
    encoder_layers:   encoder layer names used (None: the backbone's defaults)
    fuse_channels:    channels of the fusion layers
    decoder_channels: channels of the decoder layers
    """

    backbone: str
    input_size: int
    encoder_layers: list[str] | None = None
    fuse_channels: int = 128
    decoder_channels: int = 64
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        known = {k: d[k] for k in ("backbone", "input_size", "encoder_layers", "fuse_channels",
                                   "decoder_channels", "extra") if k in d}
        return cls(**known)


def _conv(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU(inplace=True))


def _bilinear_kernel(channels: int, k: int) -> torch.Tensor:
    """(channels, 1, k, k) bilinear upsampling kernel for a grouped transposed convolution."""
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    og = torch.arange(k, dtype=torch.float32)
    filt = 1 - (og - center).abs() / factor
    w = filt[:, None] * filt[None, :]
    return w.expand(channels, 1, k, k).clone()


class SiameseFlowNet(EncoderTraining, nn.Module):
    """Siamese dense-flow network (see the module docstring).

    encoder: module, forward(x (B,3,S,S)) -> dict layer -> (B, C_l, S/s_l, S/s_l)
    input_size: S. The encoder's layers, channels and strides are discovered with one dummy
    forward pass at construction; layers of equal stride are concatenated.
    """

    def __init__(self, encoder: nn.Module, input_size: int, fuse_channels: int = 128,
                 decoder_channels: int = 64, spec: ModelSpec | None = None):
        super().__init__()
        self.encoder = encoder
        self.input_size = int(input_size)
        self.spec = spec
        S = self.input_size
        was_training = encoder.training
        encoder.eval()
        dev = next((p.device for p in encoder.parameters()), torch.device("cpu"))
        with torch.no_grad():
            maps = encoder(torch.zeros(1, 3, S, S, device=dev))
        encoder.train(was_training)
        if not isinstance(maps, dict) or not maps:
            raise SopcorrError("siamese: the encoder must return a non-empty dict layer -> map")
        # group layers by spatial size (finest first)
        groups: dict[int, list[str]] = {}
        chans: dict[str, int] = {}
        for name, m in maps.items():
            groups.setdefault(int(m.shape[-1]), []).append(name)
            chans[name] = int(m.shape[1])
        sizes = sorted(groups, reverse=True)  # finest (largest) first
        self.level_layers = [groups[s] for s in sizes]
        self.level_sizes = sizes
        self.level_channels = [sum(chans[n] for n in groups[s]) for s in sizes]
        self.strides = [max(1, round(S / s)) for s in sizes]

        D, Cd = int(fuse_channels), int(decoder_channels)
        self.fuse = nn.Sequential(_conv(2 * self.level_channels[-1], D, 3), _conv(D, D, 1))
        # decoder from the coarsest level to the finest
        self.up = nn.ModuleList()
        self.skip = nn.ModuleList()
        self.merge = nn.ModuleList()
        cin = D
        for lvl in range(len(sizes) - 2, -1, -1):
            ratio = max(1, round(sizes[lvl] / sizes[lvl + 1]))
            n_up = max(1, int(round(math.log2(ratio)))) if ratio > 1 else 0
            ups = []
            for _ in range(n_up):
                ups += [nn.ConvTranspose2d(cin, Cd, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
                cin = Cd
            self.up.append(nn.Sequential(*ups))
            self.skip.append(_conv(2 * self.level_channels[lvl], Cd, 1))
            self.merge.append(_conv(cin + Cd, Cd, 3))
            cin = Cd
        self.head = nn.Conv2d(cin, 2, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        s = self.strides[0]
        self.final_stride = s
        if s > 1:
            k = 2 * s
            self.final_up = nn.ConvTranspose2d(2, 2, k, stride=s, padding=s // 2, groups=2, bias=False)
            with torch.no_grad():
                self.final_up.weight.copy_(_bilinear_kernel(2, k))
        else:
            self.final_up = nn.Identity()
        #: the head predicts flow in units of S/8 pixels (keeps outputs O(1) for the optimiser)
        self.flow_unit = S / 8.0

    # ------------------------------------------------------------------ encoder helpers
    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x (B,3,S,S) -> per level (finest first) the concatenated maps (B, C_l, H_l, W_l)."""
        maps = self.encoder(x)
        return [torch.cat([maps[n] for n in names], 1) if len(names) > 1 else maps[names[0]]
                for names in self.level_layers]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Dense descriptor for keypoint classification / scoring: every encoder level upsampled
        (bilinear) to the finest level, concatenated and L2-normalised per location.
        x (B,3,S,S) -> (B, sum C_l, S/s_0, S/s_0); grid stride ``self.strides[0]``."""
        return self.features_from_levels(self.encode(x))

    def features_from_levels(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """:meth:`features` from the output of :meth:`encode` (no second encoder pass)."""
        h, w = levels[0].shape[-2:]
        ups = [levels[0]] + [F.interpolate(m.float(), size=(h, w), mode="bilinear", align_corners=False)
                             for m in levels[1:]]
        f = torch.cat([u.float() for u in ups], 1)
        return F.normalize(f, dim=1, eps=1e-6)

    # ------------------------------------------------------------------ forward
    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """src, tgt (B,3,S,S) ImageNet-normalised -> flow (B,2,S,S) in input pixels."""
        B = src.shape[0]
        levels = self.encode(torch.cat([src, tgt], 0))  # one batched pass through the shared encoder
        return self.decode([m[:B] for m in levels], [m[B:] for m in levels])

    def decode(self, levels_src: list[torch.Tensor], levels_tgt: list[torch.Tensor]) -> torch.Tensor:
        """The flow from both streams' :meth:`encode` outputs -> (B,2,S,S) in input pixels."""
        pairs = [torch.cat([a, b], 1) for a, b in zip(levels_src, levels_tgt)]  # the two streams stacked
        y = self.fuse(pairs[-1])
        for i, lvl in enumerate(range(len(pairs) - 2, -1, -1)):
            y = self.up[i](y)
            sk = self.skip[i](pairs[lvl])
            if y.shape[-2:] != sk.shape[-2:]:
                y = F.interpolate(y, size=sk.shape[-2:], mode="bilinear", align_corners=False)
            y = self.merge[i](torch.cat([y, sk], 1))
        flow = self.final_up(self.head(y))
        S = self.input_size
        if flow.shape[-2:] != (S, S):
            flow = F.interpolate(flow, size=(S, S), mode="bilinear", align_corners=False)
        return flow * self.flow_unit


def build_model(spec: ModelSpec, device="cpu", weights=None, pretrained: bool = True) -> SiameseFlowNet:
    """Build the network described by ``spec`` on ``device``."""
    enc = encoder_for(spec, device=device, weights=weights, pretrained=pretrained)
    net = SiameseFlowNet(enc, spec.input_size, spec.fuse_channels, spec.decoder_channels, spec=spec)
    return net.to(device)


#: the checkpoint record of this architecture (:data:`sopcorr.siamese.checkpoint.NETS`)
SPEC = ModelSpec


def model_for_state(spec: ModelSpec, state: dict, device="cpu", with_encoder: bool = True):
    """(network of ``spec`` without pretrained weights, ``state``, strict): what
    :func:`sopcorr.siamese.checkpoint.model_from_checkpoint` loads a checkpoint's weights into
    (the paper's checkpoints always carry the encoder's weights)."""
    return build_model(spec, device=device, pretrained=False), state, True


# --------------------------------------------------------------------------- loss


def truncated_euclidean_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                             T2: float | None = None, reduction: str = "mean") -> torch.Tensor:
    """Truncated Euclidean flow loss (paper Eq. 10).

    pred, target: (B, 2, H, W) flows in pixels; valid: (B, H, W) bool (pixels with pseudo ground
    truth). ``T2`` defaults to the long edge ``max(H, W)``. reduction: ``'sum'`` is Eq. 10 summed
    over the batch; ``'mean'`` divides it by the number of valid pixels (0 when none).
    """
    if T2 is None:
        T2 = float(max(pred.shape[-2:]))
    d2 = ((pred.float() - target.float()) ** 2).sum(1)
    d2 = torch.clamp(d2, max=float(T2))
    v = valid.to(d2.dtype)
    total = (d2 * v).sum()
    if reduction == "sum":
        return total
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return total / v.sum().clamp(min=1.0)
