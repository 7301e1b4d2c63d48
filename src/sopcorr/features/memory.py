"""How much memory a job that runs a backbone needs: a formula of the config (the backbone's
architecture table in :mod:`sopcorr.features.registry`, the input size, the batch), evaluated
at the Snakefile's parse for the rules' ``mem_mb``. No network is built and no torch is
imported.

Activations are counted per image as the float32 outputs of every operation of the truncated
network (convolutions, batch norms, activations that are not in place, pools), one map of
``channels x ceil(S / stride)^2`` each; "same" padding is not counted.
``tests/test_features.py`` checks the count against forward hooks on the built module, and the
request against the measured peak of a real extraction.
"""
from __future__ import annotations

import math

from .registry import VGG16_CONVS, BackboneSpec, get_spec

#: resident memory (MB) of a job's Python process before any network is built (interpreter,
#: torch, numpy, zarr, OpenCV, the data) — measured ~0.85 GB with torch's CUDA build
RUNTIME_MB = 1000
#: requests are rounded up to this many MB
MEMORY_STEP_MB = 500
#: bytes per activation / parameter (float32)
FLOAT_BYTES = 4


def _side(size: int, stride: int) -> int:
    return -(-int(size) // int(stride))  # TF "same": ceil(S / stride)


def _vgg16_maps(spec: BackboneSpec, size: int, last: int) -> list[int]:
    """Elements of each op output of VGG16 ``features[0..last]`` for one image: the convs (their
    ReLUs are in place) and the max pools (after conv1_2, 2_2, 3_3, 4_3, 5_3)."""
    convs = {i: (s, c) for i, s, c in VGG16_CONVS.values()}
    out = []
    for idx in range(last + 1):
        if idx in convs:
            s, c = convs[idx]
            out.append(c * _side(size, s) ** 2)
        elif idx - 2 in convs and idx - 1 not in convs:  # features[idx] after conv + ReLU: a pool
            s, c = convs[idx - 2]
            out.append(c * _side(size, 2 * s) ** 2)
    return out


def _lite_maps(spec: BackboneSpec, size: int, last: int) -> list[int]:
    """Elements of each op output of an EfficientNet-Lite truncated after block ``last`` (-1:
    the stem only; the number of blocks: through the head) for one image. Stem: conv, BN, ReLU6.
    MBConv block (C_in -> C_out, expansion e, stride s): expansion conv, BN, ReLU6 at the input
    side (when e != 1), depthwise conv, BN, ReLU6 and projection conv, BN at the output side.
    Head: conv, BN, ReLU6."""
    stem = spec.layer("stem")
    out = [stem.channels * _side(size, stem.stride) ** 2] * 3
    stride, block = stem.stride, 0
    for st in spec.stages:
        for j in range(st.blocks):
            if block > last:
                return out
            c_in = st.in_channels if j == 0 else st.out_channels
            s_out = stride * (st.stride if j == 0 else 1)
            hidden = c_in * st.expand
            if st.expand != 1:
                out += [hidden * _side(size, stride) ** 2] * 3
            out += [hidden * _side(size, s_out) ** 2] * 3
            out += [st.out_channels * _side(size, s_out) ** 2] * 2
            stride, block = s_out, block + 1
    if last >= block:
        head = spec.layer("head")
        out += [head.channels * _side(size, head.stride) ** 2] * 3
    return out


def activation_bytes(name: str, input_size: int, layers=None) -> tuple[int, int, int]:
    """(largest, total, parameters) in bytes for backbone ``name`` truncated after the deepest of
    ``layers`` (None: its default layers), one float32 image of side ``input_size``: the largest
    and the summed op outputs (see the module docstring) and the *whole* model's parameters
    (the state dict that is loaded)."""
    spec = get_spec(name)
    chosen = list(layers) if layers else list(spec.default_layers)
    last = max(spec.layer(n).index for n in chosen)
    maps = (_vgg16_maps if name == "vgg16" else _lite_maps)(spec, int(input_size), last)
    return max(maps) * FLOAT_BYTES, sum(maps) * FLOAT_BYTES, spec.parameters * FLOAT_BYTES


def job_memory_mb(name: str, input_size: int, batch_size: int, layers=None, training: bool = False) -> int:
    """Memory (MB) to request for a job that runs backbone ``name`` at ``input_size`` on
    ``batch_size`` images at a time (:func:`activation_bytes`), rounded up to
    :data:`MEMORY_STEP_MB`:

    * inference (``training=False``): ``RUNTIME_MB`` + 2 x the weights (state dict + model) +
      batch x 4 x the largest activation (an op's input, output and temporaries, the kept maps);
    * training the backbone end to end: ``RUNTIME_MB`` + 4 x the weights (weights, gradients,
      two Adam moments) + batch x 2 x the summed activations (autograd keeps every op's output,
      and the backward pass holds about as much again in gradients).
    """
    largest, total, params = activation_bytes(name, int(input_size), layers)
    b = max(1, int(batch_size))
    need = (4 * params + b * 2 * total) if training else (2 * params + b * 4 * largest)
    return round_up_mb(RUNTIME_MB + need / 2 ** 20)


def round_up_mb(mb: float) -> int:
    """``mb`` rounded up to a multiple of :data:`MEMORY_STEP_MB`."""
    return int(math.ceil(mb / MEMORY_STEP_MB) * MEMORY_STEP_MB)


def grid_shape(name: str, input_size: int, layers=None) -> tuple[int, int]:
    """(side, channels) of the feature stage's grid: backbone ``name`` at ``input_size``, the
    ``layers`` (None: its default ones) upsampled to the finest and concatenated."""
    spec = get_spec(name)
    chosen = list(layers) if layers else list(spec.default_layers)
    stride = min(spec.layer(n).stride for n in chosen)
    return int(input_size) // stride, sum(spec.layer(n).channels for n in chosen)


def correlation_training_mb(grid_side: int, channels: int, images: int, pairs: int, batch_size: int,
                            cells_per_pair: int | None, hidden_channels: int, descriptor_dim: int) -> int:
    """Memory (MB) to request for training the correlation network's head on the cached grids
    (``siamese.freeze_encoder: true``: no backbone is built), rounded up to
    :data:`MEMORY_STEP_MB`: ``RUNTIME_MB`` +

    * the grids of every image (float16 ``images x side^2 x channels``), twice: the stores'
      arrays and their concatenation exist together while they are loaded;
    * the teacher: float32 target cells and weights per cell of every pair (12 bytes), twice
      (per-category arrays and their concatenation), plus one float64 read of the coordinates;
    * a batch of ``batch_size`` pairs through the head: both grids in float32, the hidden and
      descriptor maps, kept for the backward pass (x 2);
    * the correlations of the drawn cells (``cells_per_pair``, None: every cell) against every
      target cell, forward and reverse, with their logits, softmax and read-out kernel (x 12),
      kept for the backward pass (x 2).
    """
    cells = int(grid_side) ** 2
    b = max(1, int(batch_size))
    n = cells if cells_per_pair is None else min(int(cells_per_pair), cells)
    grids = 2 * images * cells * channels * 2
    teacher = 2 * pairs * cells * 12 + pairs * cells * 2 * 8
    head = 2 * (2 * b * cells * (channels + hidden_channels + 2 * descriptor_dim) * FLOAT_BYTES)
    corr = 2 * 12 * b * n * cells * FLOAT_BYTES
    return round_up_mb(RUNTIME_MB + (grids + teacher + head + corr) / 2 ** 20)
