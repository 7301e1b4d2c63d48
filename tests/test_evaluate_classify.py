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
