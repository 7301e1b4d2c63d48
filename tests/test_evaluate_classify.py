import numpy as np

from sopcorr.evaluate.classify import crop_object, svm_accuracy, to_crop


def test_svm_separable_toy_descriptors():
    rng = np.random.default_rng(0)
    centres = np.eye(4) * 5
    y_tr = np.repeat(np.arange(4), 20)
    y_te = np.repeat(np.arange(4), 5)
    x_tr = centres[y_tr] + rng.normal(scale=0.3, size=(80, 4))
    x_te = centres[y_te] + rng.normal(scale=0.3, size=(20, 4))
    assert svm_accuracy(x_tr, y_tr, x_te, y_te) == (20, 20)
    # labels shuffled at test time: accuracy drops
    c, t = svm_accuracy(x_tr, y_tr, x_te, (y_te + 1) % 4)
    assert c == 0 and t == 20


def test_crop_maps_points_consistently():
    img = np.zeros((50, 80, 3), np.uint8)
    img[20, 30] = 255
    crop, sc, off = crop_object(img, (10, 10, 49, 29), 40)  # 40 x 20 box -> 40 x 40
    p = to_crop([[30, 20]], sc, off)[0]
    y, x = np.unravel_index(np.argmax(crop[..., 0]), crop.shape[:2])
    assert abs(x - p[0]) <= 1 and abs(y - p[1]) <= 1
    np.testing.assert_allclose(sc, [1.0, 2.0])


def test_a_network_descriptor_is_sampled_on_the_warped_box():
    """Table 1's network row follows the baselines' protocol: the network describes the box
    warped to crop_size, sampled at the keypoints mapped into the crop. The stand-in network's
    descriptor at a crop pixel is that pixel's crop coordinates, so the sample is to_crop(pts)."""
    from types import SimpleNamespace

    from sopcorr.evaluate.classify import descriptor_functions
    from sopcorr.geometry import FeatureGrid, Letterbox

    size = 32

    def image_descriptors(crop):
        assert crop.shape == (size, size, 3)
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        return np.stack([xs, ys], -1), FeatureGrid(Letterbox(size, size, size), 1)

    img = np.zeros((60, 80, 3), np.uint8)
    cat = SimpleNamespace(image=lambda i: img, bbox=lambda i: (10, 20, 49, 39))
    method = SimpleNamespace(matcher=SimpleNamespace(image_descriptors=image_descriptors), frames=None)
    f = descriptor_functions(cat, ["ours_finetuned"], size, matchers={"ours_finetuned": method})["ours_finetuned"]
    pts = np.array([[20.0, 25.0], [40.5, 33.0]])
    _, sc, off = crop_object(img, (10, 20, 49, 39), size)
    assert np.allclose(f(0, pts), to_crop(pts, sc, off), atol=1e-4)


def test_conv_rows_share_one_backbone_pass_per_image(monkeypatch):
    """Table 1's conv4 and conv5 rows: the SVM baselines describe every image for conv4, then
    every image for conv5; each image goes through the backbone once, and each row's
    descriptors equal the layer's map of that image's own pass (slow reference: a fresh pass
    per image and layer)."""
    import torch

    from sopcorr.evaluate import classify
    from sopcorr.evaluate.classify import ConvDescriptorParams, descriptor_functions, map_descriptors
    from sopcorr.features import backbones
    from sopcorr.features.extract import combine_layers, preprocess
    from sopcorr.geometry import FeatureGrid

    size = 64
    conv = ConvDescriptorParams(device="cpu")
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (50 + 7 * i, 70, 3), dtype=np.uint8) for i in range(3)]
    boxes = [(5, 4, 60, 40 + 5 * i) for i in range(3)]
    pts = [np.array([[10.0 + i, 12.0], [40.5, 30.0 + i]]) for i in range(3)]

    class Cat:
        def image(self, i):
            return imgs[i]

        def bbox(self, i):
            return boxes[i]

    passes = []
    build = backbones.build_backbone

    def counting_build(*a, **kw):
        net = build(*a, **kw)
        net.register_forward_hook(lambda mod, inp, out: passes.append(1))
        return net

    monkeypatch.setattr(backbones, "build_backbone", counting_build)
    fns = descriptor_functions(Cat(), ["conv4", "conv5"], size, conv)
    got = {name: [fns[name](i, pts[i]) for i in range(3)] for name in ("conv4", "conv5")}
    assert len(passes) == 3
    net = build(conv.backbone, size, layers=conv.conv_layers(), weights=conv.weights, device="cpu")
    for name, layer in zip(("conv4", "conv5"), conv.conv_layers()):
        for i in range(3):
            crop, sc, off = classify.crop_object(imgs[i], boxes[i], size)
            x, lb = preprocess(crop, size, net.spec.mean, net.spec.std)
            with torch.no_grad():
                feats = net(x[None])
            ref = map_descriptors(combine_layers(feats, [layer], relu=conv.relu)[0].numpy(),
                                  FeatureGrid(lb, net.strides[layer]), classify.to_crop(pts[i], sc, off))
            assert np.array_equal(got[name][i], ref)
