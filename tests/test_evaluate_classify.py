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
