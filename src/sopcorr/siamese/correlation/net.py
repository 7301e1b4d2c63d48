"""The correlation network (``siamese.architecture: correlation``, the default): matching inside
a Siamese network.

Both images go through the same frozen (or, end to end, trainable) **encoder**: the configured
backbone at the feature stage's layers and input size, combined exactly as the feature stage
combines them (:func:`sopcorr.features.extract.combine_layers`), so its output *is* a feature
store's grid ``(B, C, H, W)``. A small trainable **head** turns each grid into dense
L2-normalised descriptors: a k x k convolution, ReLU, a 1 x 1 convolution (``hidden = 0``: one
linear k x k convolution); with ``raw_weight`` a the descriptor also carries the encoder grid
itself, ``(sqrt(a) g, sqrt(1 - a) h)`` (a residual descriptor: the learned head corrects the raw
features' similarity instead of replacing it). The network then **matches inside itself**: the
cosine correlation of the two streams' descriptors ``(B, Hs*Ws, Ht*Wt)``, with ``consensus``
its **neighbourhood consensus** (a fixed 4-D filter: each match averaged with its neighbours'
matches under the same displacement, over a radius that is a fixed fraction of the grid), with
``mutual`` NC-Net's soft mutual nearest-neighbour filter, and a **kernel soft-argmax** read-out
(SFNet): per source cell, the softmax of ``correlation / temperature`` restricted by a
Gaussian of ``readout_sigma`` cells around its arg-max, whose expectation is the matched target
cell (continuous ``(col, row)``). One forward pass per pair; no RANSAC, no prior.

Shapes: grids (B, C, H, W); descriptors (B, D, H, W); correlation (B, Ns, Nt) with cells
flattened row-major (n = row * W + col); read-out (B, Ns, 2) target cell coordinates (col,
row) and (B, Ns) scores (the cosine of the arg-max).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import SopcorrError
from ..encoder import EncoderTraining, build_encoder

ARCHITECTURE = "correlation"


@dataclass(frozen=True)
class NetworkSpec:
    """What a checkpoint of the correlation network records to rebuild it.

    backbone, input_size, layers, relu, weights: the encoder = the feature stage's backbone
    setting (``weights`` a state-dict path or None for the packaged ImageNet weights);
    in_channels, stride: the encoder grid's channels C and stride (pixels per cell);
    hidden_channels: width of the head's hidden layer (0: a single linear conv);
    descriptor_dim: D; kernel_size: the head's k x k convolution (odd);
    reduce_first: the head is 1 x 1 conv -> ReLU -> k x k conv (cheaper on wide grids) instead of
    k x k conv -> ReLU -> 1 x 1 conv;
    temperature: of the correlation's softmax (training loss and read-out);
    readout_sigma: Gaussian of the kernel soft-argmax in cells (0: plain soft-argmax);
    raw_weight: a in [0, 1): the descriptor is the unit vector (sqrt(a) g, sqrt(1 - a) h) of the
    encoder grid g (L2 per cell) and the head's h, so the correlation is a x the raw cosine +
    (1 - a) x the learned one (0: the head alone); consensus: f > 0 reads out the correlation's
    neighbourhood consensus, the mean of c(s + d, t + d) over the offsets |d| <= r inside both
    grids (:func:`neighbourhood_consensus`), r = f x the grid's long side in cells, rounded
    (:func:`consensus_radius`: the same share of the image at any input size; 0: off); mutual: then NC-Net's
    soft mutual nearest-neighbour filter (:func:`soft_mutual`). All three are read-out settings:
    the training loss sees the head's descriptors and their plain correlation (training through
    the residual or the consensus was no better across categories, docs/RESULTS.md);
    encoder_trained: the checkpoint carries encoder weights (end-to-end training).
    """

    backbone: str
    input_size: int
    layers: tuple[str, ...]
    relu: bool
    in_channels: int
    stride: int
    hidden_channels: int = 128
    descriptor_dim: int = 128
    kernel_size: int = 3
    temperature: float = 0.07
    readout_sigma: float = 2.0
    reduce_first: bool = True
    raw_weight: float = 0.0
    consensus: float = 0.0
    mutual: bool = False
    weights: str | None = None
    encoder_trained: bool = False
    architecture: str = field(default=ARCHITECTURE, init=False)

    def __post_init__(self):
        if self.kernel_size % 2 != 1:
            raise SopcorrError(f"siamese.correlation.kernel_size: must be odd, got {self.kernel_size}")
        if not 0.0 <= float(self.raw_weight) < 1.0:
            raise SopcorrError(f"siamese.correlation.raw_weight: must be in [0, 1), got {self.raw_weight}")
        if not 0.0 <= float(self.consensus) <= 0.5:
            raise SopcorrError(f"siamese.correlation.consensus: must be in [0, 0.5], got {self.consensus}")

    @property
    def grid_size(self) -> int:
        return self.input_size // self.stride

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = list(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkSpec":
        keys = ("backbone", "input_size", "layers", "relu", "in_channels", "stride", "hidden_channels",
                "descriptor_dim", "kernel_size", "temperature", "readout_sigma", "reduce_first", "weights",
                "encoder_trained", "raw_weight", "consensus", "mutual")
        kw = {k: d[k] for k in keys if k in d}
        kw["layers"] = tuple(kw.get("layers", ()))
        return cls(**kw)

    def replace(self, **kw) -> "NetworkSpec":
        d = self.to_dict()
        d.update(kw)
        return NetworkSpec.from_dict(d)


# --------------------------------------------------------------------------- modules


class GridEncoder(nn.Module):
    """The feature stage's grid as a module: backbone layers combined by
    :func:`~sopcorr.features.extract.combine_layers` (ReLU if ``relu``, per-layer L2, bilinear
    upsampling to the finest layer, L2). x (B, 3, S, S) normalised -> (B, C, S/s, S/s)."""

    def __init__(self, backbone: nn.Module, layers, relu: bool):
        super().__init__()
        self.backbone = backbone
        self.layers = list(layers)
        self.relu = bool(relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from ...features.extract import combine_layers

        return combine_layers(self.backbone(x), self.layers, relu=self.relu).permute(0, 3, 1, 2)


def grid_encoder(spec: NetworkSpec, device="cpu", pretrained: bool = True) -> GridEncoder:
    """The encoder of ``spec``: the shared encoder (:func:`sopcorr.siamese.encoder.build_encoder`,
    ImageNet weights unless ``pretrained=False``, when a checkpoint's weights are loaded right
    after) at the feature stage's layers, combined as the feature stage combines them."""
    bb = build_encoder(spec.backbone, spec.input_size, spec.layers, weights=spec.weights, device=device,
                       pretrained=pretrained)
    return GridEncoder(bb, bb.layers, spec.relu)


class DescriptorHead(nn.Module):
    """(B, C, H, W) grid -> (B, D, H, W) L2-normalised descriptors: k x k conv -> ReLU -> 1 x 1
    conv (``reduce_first``: 1 x 1 conv -> ReLU -> k x k conv; ``hidden = 0``: one k x k conv)."""

    def __init__(self, in_channels: int, descriptor_dim: int, hidden_channels: int = 256, kernel_size: int = 3,
                 reduce_first: bool = False):
        super().__init__()
        p = kernel_size // 2
        if hidden_channels > 0 and reduce_first:
            self.net = nn.Sequential(nn.Conv2d(in_channels, hidden_channels, 1), nn.ReLU(inplace=True),
                                     nn.Conv2d(hidden_channels, descriptor_dim, kernel_size, padding=p))
        elif hidden_channels > 0:
            self.net = nn.Sequential(nn.Conv2d(in_channels, hidden_channels, kernel_size, padding=p),
                                     nn.ReLU(inplace=True), nn.Conv2d(hidden_channels, descriptor_dim, 1))
        else:
            self.net = nn.Conv2d(in_channels, descriptor_dim, kernel_size, padding=p)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(grid.float()), dim=1, eps=1e-6)


def soft_mutual(corr: torch.Tensor) -> torch.Tensor:
    """NC-Net's soft mutual nearest-neighbour filter: c' = c * (c / max_t c) * (c / max_s c) on
    the correlation (B, Ns, Nt) clipped at 0 (a match that is not its target's best is damped)."""
    c = corr.clamp(min=0)
    return c * (c / c.amax(2, keepdim=True).clamp(min=1e-6)) * (c / c.amax(1, keepdim=True).clamp(min=1e-6))


def residual_descriptors(grid: torch.Tensor, learned: torch.Tensor, raw_weight: float) -> torch.Tensor:
    """(B, C + D, H, W) unit descriptors (sqrt(a) g, sqrt(1 - a) h) of the encoder grid g
    (B, C, H, W), L2-normalised per cell, and the head's unit descriptors h (B, D, H, W): their
    cosine is a x the raw cosine + (1 - a) x the learned one. ``raw_weight`` a = 0 returns h."""
    a = float(raw_weight)
    if a <= 0:
        return learned
    g = F.normalize(grid.float(), dim=1, eps=1e-6)
    return torch.cat([g * a ** 0.5, learned * (1.0 - a) ** 0.5], 1)


def cell_coordinates(h: int, w: int, device=None) -> torch.Tensor:
    """(h * w, 2) float (col, row) of the cells of an h x w grid, row-major."""
    r = torch.arange(h, device=device, dtype=torch.float32)
    c = torch.arange(w, device=device, dtype=torch.float32)
    rr, cc = torch.meshgrid(r, c, indexing="ij")
    return torch.stack([cc.reshape(-1), rr.reshape(-1)], 1)


def correlation(desc_src: torch.Tensor, desc_tgt: torch.Tensor) -> torch.Tensor:
    """Cosine correlation of L2-normalised descriptors (B, D, Hs, Ws), (B, D, Ht, Wt) ->
    (B, Hs*Ws, Ht*Wt)."""
    return torch.bmm(desc_src.flatten(2).transpose(1, 2), desc_tgt.flatten(2))


def consensus_radius(fraction: float, shape: tuple[int, int]) -> int:
    """The neighbourhood consensus radius in cells on a grid of ``shape`` (H, W): ``fraction`` x
    its long side, rounded half up (1/16: 1 cell on 16 x 16, 2 on 28 x 28, 3 on 44 x 44)."""
    return int(math.floor(float(fraction) * max(shape) + 0.5))


def neighbourhood_consensus(corr: torch.Tensor, shape_src: tuple[int, int], shape_tgt: tuple[int, int],
                            radius: int) -> torch.Tensor:
    """The correlation's neighbourhood consensus: ``c'(s, t) = mean_d c(s + d, t + d)`` over the
    offsets d in [-radius, radius]^2 for which both s + d and t + d lie inside their grids (a
    fixed 4-D filter along the diagonal of the 4-D correlation: a match is supported by its
    neighbours moving by the same displacement, the assumption NC-Net learns its 4-D filters
    for). corr (B, Hs*Ws, Ht*Wt) -> the same shape; ``radius`` 0 returns ``corr``."""
    r = int(radius)
    if r <= 0:
        return corr
    hs, ws = shape_src
    ht, wt = shape_tgt
    B = corr.shape[0]
    c = corr.reshape(B, hs, ws, ht, wt)
    pad = F.pad(c, (r, r, r, r, r, r, r, r))
    ones = F.pad(torch.ones(1, hs, ws, ht, wt, dtype=corr.dtype, device=corr.device), (r, r, r, r, r, r, r, r))
    total = torch.zeros_like(c)
    count = torch.zeros_like(c[:1])
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            sl = (slice(None), slice(r + dy, r + dy + hs), slice(r + dx, r + dx + ws),
                  slice(r + dy, r + dy + ht), slice(r + dx, r + dx + wt))
            total = total + pad[sl]
            count = count + ones[sl]
    return (total / count).reshape(B, hs * ws, ht * wt)


#: added to the logits of invalid cells: exp() of it is exactly 0 in float32 (no -inf, no NaN)
MASKED = -1.0e4


def masked_logits(corr: torch.Tensor, valid_tgt: torch.Tensor | None, temperature: float) -> torch.Tensor:
    """corr / temperature with invalid target cells pushed to :data:`MASKED`. corr (B, Ns, Nt);
    valid_tgt (B, Nt) bool or None (a target without any valid cell keeps all cells)."""
    logits = corr / float(temperature)
    if valid_tgt is None:
        return logits
    v = valid_tgt.bool()
    v = v | ~v.any(1, keepdim=True)
    return logits + torch.where(v, 0.0, MASKED).to(logits.dtype)[:, None, :]


def gaussian_1d(centre: torch.Tensor, n: int, sigma: float) -> torch.Tensor:
    """(..., n) log of an unnormalised Gaussian of ``sigma`` cells: -(k - centre)^2 / (2 sigma^2),
    k = 0 .. n-1, for centres (...)."""
    k = torch.arange(n, device=centre.device, dtype=torch.float32)
    return -((k - centre[..., None].float()) ** 2) / (2.0 * float(sigma) ** 2)


def expected_cell(weights: torch.Tensor, shape_tgt: tuple[int, int]) -> torch.Tensor:
    """(B, Ns, Nt) weights summing to 1 per row -> (B, Ns, 2) expected (col, row)."""
    ht, wt = shape_tgt
    w = weights.reshape(*weights.shape[:2], ht, wt)
    cols = torch.arange(wt, device=w.device, dtype=w.dtype)
    rows = torch.arange(ht, device=w.device, dtype=w.dtype)
    return torch.stack([w.sum(-2) @ cols, w.sum(-1) @ rows], -1)


def kernel_soft_argmax(corr: torch.Tensor, shape_tgt: tuple[int, int], valid_tgt: torch.Tensor | None = None,
                       temperature: float = 0.07, sigma: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel soft-argmax read-out (SFNet) of a correlation.

    corr (B, Ns, Nt) cosine; shape_tgt (Ht, Wt); valid_tgt (B, Nt) bool. Per source cell the
    weights are ``softmax(corr / temperature + log k)`` over the valid target cells, k a Gaussian
    of ``sigma`` cells centred on the row's arg-max (``sigma <= 0``: k = 1, the plain
    soft-argmax). Returns ((B, Ns, 2) expected target cell (col, row), (B, Ns) the arg-max
    cosine). Differentiable in ``corr`` (the arg-max only places the kernel)."""
    ht, wt = shape_tgt
    B, Ns, _ = corr.shape
    logits = masked_logits(corr, valid_tgt, temperature)
    idx = logits.detach().argmax(-1)
    score = corr.gather(-1, idx[..., None])[..., 0]
    if sigma > 0:
        kr = gaussian_1d(torch.div(idx, wt, rounding_mode="floor"), ht, sigma)   # (B, Ns, Ht)
        kc = gaussian_1d(idx % wt, wt, sigma)                                       # (B, Ns, Wt)
        logits = (logits.reshape(B, Ns, ht, wt) + kr[..., :, None] + kc[..., None, :]).reshape(B, Ns, ht * wt)
    return expected_cell(torch.softmax(logits, -1), shape_tgt), score


def interpolated_rows(corr: torch.Tensor, shape_src: tuple[int, int], cells: torch.Tensor) -> torch.Tensor:
    """The bilinear interpolation of a correlation's rows at continuous source cells: how the
    network reads out a point between cell centres (a keypoint).

    corr (Ns, Nt), its rows the cells of a source grid of ``shape_src`` (Hs, Ws), row-major;
    cells (K, 2) continuous (col, row), clamped to the grid -> (K, Nt): row k is the bilinear
    weighted sum of the rows of the (at most four) cells around ``cells[k]`` (a cell centre gives
    its own row exactly). Before the read-out filters (consensus, mutual) this is the correlation
    of the point's bilinearly interpolated descriptor, correlation being linear in it."""
    hs, ws = shape_src
    cr = cells.reshape(-1, 2).to(device=corr.device, dtype=torch.float64)
    c = cr[:, 0].clamp(0, ws - 1)
    r = cr[:, 1].clamp(0, hs - 1)
    c0, r0 = c.floor().long(), r.floor().long()
    c1, r1 = (c0 + 1).clamp(max=ws - 1), (r0 + 1).clamp(max=hs - 1)
    fc, fr = (c - c0).to(corr.dtype)[:, None], (r - r0).to(corr.dtype)[:, None]
    return ((1 - fr) * ((1 - fc) * corr[r0 * ws + c0] + fc * corr[r0 * ws + c1])
            + fr * ((1 - fc) * corr[r1 * ws + c0] + fc * corr[r1 * ws + c1]))


class CorrelationNet(EncoderTraining, nn.Module):
    """Siamese correlation network (module docstring). ``encoder`` None: the network works on
    encoder grids given by the caller (training on cached feature grids)."""

    def __init__(self, spec: NetworkSpec, encoder: nn.Module | None = None):
        super().__init__()
        self.spec = spec
        self.encoder = encoder
        self.head = DescriptorHead(spec.in_channels, spec.descriptor_dim, spec.hidden_channels, spec.kernel_size,
                                   spec.reduce_first)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised images -> (B, C, H, W) encoder grids."""
        if self.encoder is None:
            raise SopcorrError("siamese: this network was built without its encoder (grids only)")
        return self.encoder(images)

    def describe(self, grid: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) encoder grid -> (B, D, H, W) L2-normalised descriptors ((B, C + D, H, W)
        with ``raw_weight``: :func:`residual_descriptors`)."""
        return residual_descriptors(grid, self.head(grid), self.spec.raw_weight)

    def filter(self, corr: torch.Tensor, shape_src: tuple[int, int], shape_tgt: tuple[int, int]) -> torch.Tensor:
        """The correlation the network reads out from the cosines (B, Ns, Nt) of its descriptors:
        their neighbourhood consensus (``consensus``, radius from the source grid), then the soft mutual filter
        (``mutual``); the cosines themselves when both are off."""
        corr = neighbourhood_consensus(corr, shape_src, shape_tgt,
                                       consensus_radius(self.spec.consensus, tuple(shape_src)))
        return soft_mutual(corr) if self.spec.mutual else corr

    def match(self, desc_src: torch.Tensor, desc_tgt: torch.Tensor, valid_tgt: torch.Tensor | None = None):
        """Descriptors (B, D, Hs, Ws), (B, D, Ht, Wt) -> (correlation (B, Ns, Nt), read-out
        (B, Ns, 2) target cells (col, row), score (B, Ns))."""
        corr = self.filter(correlation(desc_src, desc_tgt), desc_src.shape[-2:], desc_tgt.shape[-2:])
        cells, score = kernel_soft_argmax(corr, desc_tgt.shape[-2:], valid_tgt, self.spec.temperature,
                                          self.spec.readout_sigma)
        return corr, cells, score

    def forward(self, grid_src: torch.Tensor, grid_tgt: torch.Tensor, valid_tgt: torch.Tensor | None = None):
        """Encoder grids (B, C, H, W) of source and target -> (B, Ns, 2) target cells, (B, Ns) scores."""
        _, cells, score = self.match(self.describe(grid_src), self.describe(grid_tgt), valid_tgt)
        return cells, score


def build_network(spec: NetworkSpec, device="cpu", with_encoder: bool = True, pretrained: bool = True) -> CorrelationNet:
    """The network of ``spec`` on ``device``; ``with_encoder=False`` leaves the encoder out
    (training on cached grids)."""
    enc = grid_encoder(spec, device=device, pretrained=pretrained) if with_encoder else None
    return CorrelationNet(spec, enc).to(device)


#: the checkpoint record of this architecture (:data:`sopcorr.siamese.checkpoint.NETS`)
SPEC = NetworkSpec


def model_for_state(spec: NetworkSpec, state: dict, device="cpu", with_encoder: bool = True):
    """(network of ``spec``, the part of ``state`` to load, strict): what
    :func:`sopcorr.siamese.checkpoint.model_from_checkpoint` loads a checkpoint's weights into.
    A checkpoint without encoder weights (a frozen encoder) takes the registry's ImageNet
    encoder; ``with_encoder=False`` builds the head only (training on cached grids). A VGG16
    classifier in the encoder's weights (unused; the shared encoder drops it) is ignored."""
    state = {k: v for k, v in state.items() if not k.startswith("encoder.backbone.model.classifier.")}
    has_encoder = any(k.startswith("encoder.") for k in state)
    model = build_network(spec, device=device, with_encoder=with_encoder, pretrained=not has_encoder)
    if not with_encoder:
        state = {k: v for k, v in state.items() if not k.startswith("encoder.")}
    return model, state, has_encoder or not with_encoder
