"""Keypoint classification with descriptor baselines (paper Table 1; Long et al. 2014 protocol).

Each object is cropped to its box and warped to ``size x size``; a descriptor is sampled at
each visible ground-truth keypoint; one one-vs-all linear SVM per category (sklearn LinearSVC)
is trained on the train split's keypoints to predict the keypoint name; accuracy is the fraction
of the test split's visible keypoints whose name is predicted. Descriptors are L2-normalised.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import SopcorrError
from ..geometry import FeatureGrid, bilinear_sample

log = logging.getLogger(__name__)


def crop_object(image: np.ndarray, bbox, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop ``image`` (H, W, 3) uint8 to ``bbox`` (xmin, ymin, xmax, ymax) and warp it to
    (size, size, 3). Returns the crop and (scale (2,), offset (2,)) such that a crop point is
    ``(xy - offset) * scale`` (pixel-centre convention)."""
    from PIL import Image

    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in bbox)
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(float(w - 1), x1), min(float(h - 1), y1)
    bw, bh = max(x1 - x0 + 1.0, 1.0), max(y1 - y0 + 1.0, 1.0)
    box = (x0, y0, x0 + bw, y0 + bh)   # PIL edge coordinates: pixel i spans [i, i + 1)
    crop = Image.fromarray(np.ascontiguousarray(image)).transform(
        (size, size), Image.Transform.EXTENT, box, resample=Image.Resampling.BILINEAR)
    scale = np.array([size / bw, size / bh])
    offset = np.array([x0 - 0.5, y0 - 0.5])
    return np.asarray(crop), scale, offset


def to_crop(points_xy: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Image points (M, 2) -> crop points (M, 2) (pixel-centre convention)."""
    return (np.asarray(points_xy, dtype=np.float64) - offset) * scale - 0.5


def sift_descriptors(image: np.ndarray, points_xy: np.ndarray, radius: float) -> np.ndarray:
    """OpenCV SIFT descriptors (M, 128), unit L2 norm, of an RGB uint8 image at points (M, 2)
    with a support radius of ``radius`` pixels (sopcorr.flow.dsift: KeyPoint.size = radius / 3,
    upright)."""
    from ..flow.dsift import dense_sift

    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return np.zeros((0, 128), np.float32)
    return dense_sift(image, radius, points=pts).astype(np.float32)


def map_descriptors(desc_map: np.ndarray, grid: FeatureGrid, points_xy: np.ndarray) -> np.ndarray:
    """Bilinearly sample a dense map (H, W, C) on ``grid`` at image points (M, 2) -> (M, C)."""
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return np.zeros((0, desc_map.shape[-1]), np.float32)
    return bilinear_sample(np.asarray(desc_map, np.float32), grid.image_to_cell(pts)).astype(np.float32)


def l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def svm_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                 C: float = 1.0, seed: int = 0) -> tuple[int, int]:
    """Train a one-vs-all linear SVM on (n, D) descriptors with integer labels and return
    (correct, total) on the test descriptors. With one training class every test point gets
    that class."""
    from sklearn.svm import LinearSVC

    y_train = np.asarray(y_train)
    y_test = np.asarray(y_test)
    if len(y_test) == 0:
        return 0, 0
    classes = np.unique(y_train)
    if len(classes) == 0:
        return 0, int(len(y_test))
    if len(classes) == 1:
        pred = np.full(len(y_test), classes[0])
    else:
        clf = LinearSVC(C=C, multi_class="ovr", dual="auto", max_iter=5000, random_state=seed)
        clf.fit(l2n(x_train), y_train)
        pred = clf.predict(l2n(x_test))
    return int((pred == y_test).sum()), int(len(y_test))


# ---------------------------------------------------------------------- the per-category driver
#: Table 1's method descriptors: descriptor name -> the method whose matcher's descriptors
#: they are (sopcorr.matchers.methods)
DESCRIPTOR_METHODS = {"ours_embed": "nn_embed", "ours_finetuned": "ours_finetuned"}

@dataclass(frozen=True)
class ConvDescriptorParams:
    """The backbone of the conv4/conv5 rows: name, layers (the two layers; None: the
    backbone's pair from :func:`sopcorr.features.registry.conv_row_layers`), weights (a state-dict path or None), relu,
    device (speed only)."""

    backbone: str = "efficientnet_lite0"
    layers: tuple | None = None
    weights: str | None = None
    relu: bool = True
    device: str = "auto"

    def conv_layers(self) -> list[str]:
        from ..features.registry import conv_row_layers

        lays = list(self.layers or conv_row_layers(self.backbone))
        if len(lays) != 2:
            raise SopcorrError(f"evaluate.conv_layers: no conv4/conv5 layers for backbone '{self.backbone}' "
                               f"(set evaluate.conv_layers to two of its layers)")
        return lays


def _keypoint_sets(cat, indices):
    """Visible keypoints of ``indices``: list of (instance index, points (V, 2), name idx (V,))."""
    out = []
    for i in indices:
        kp = cat.keypoints(int(i))
        vis = kp[:, 2] > 0
        out.append((int(i), kp[vis, :2], np.flatnonzero(vis)))
    return out


def _conv_functions(cat, crop_size: int, conv: ConvDescriptorParams):
    """{'conv4': f, 'conv5': f}: the backbone's two layers on the box warped to crop_size."""
    import torch

    from ..features.backbones import build_backbone
    from ..features.extract import combine_layers, preprocess

    lays = conv.conv_layers()
    net = build_backbone(conv.backbone, crop_size, layers=lays, weights=conv.weights, device=conv.device)
    # one backbone pass per image serves both rows: the SVM baselines describe every image for
    # conv4, then every image again for conv5 (run_svm_baselines), so each image's descriptors
    # of both layers at its points are kept ((V, D) per layer, not the maps)
    sampled: dict = {}

    def describe(i, pts):
        key = (i, np.asarray(pts, np.float64).tobytes())
        if key not in sampled:
            crop, sc, off = crop_object(cat.image(i), cat.bbox(i), crop_size)
            x, lb = preprocess(crop, crop_size, net.spec.mean, net.spec.std)
            with torch.no_grad():
                feats = net(x[None].to(next(net.parameters()).device))
            at = to_crop(pts, sc, off)
            sampled[key] = {l: map_descriptors(combine_layers(feats, [l], relu=conv.relu)[0].cpu().numpy(),
                                               FeatureGrid(lb, net.strides[l]), at) for l in lays}
        return sampled[key]

    def fn(layer):
        def f(i, pts):
            return describe(i, pts)[layer]
        return f

    return {"conv4": fn(lays[0]), "conv5": fn(lays[1])}


def descriptor_functions(cat, names, crop_size: int, conv: ConvDescriptorParams | None = None,
                         matchers: dict | None = None):
    """{descriptor name: f(instance index, points (V, 2)) -> (V, D)} for the requested
    ``names``: 'sift_r<radius>', 'conv4', 'conv5' (two layers of the backbone of ``conv``),
    and method descriptors: ``matchers`` maps a name ('ours_embed', 'ours_finetuned') to a
    :class:`~sopcorr.matchers.methods.Method` whose matcher's ``descriptors(frame)`` is
    sampled at the points (the manifold embedding: one per image). SIFT, conv and a network's
    descriptors (a matcher with ``image_descriptors(image)``, e.g. the fine-tuned Siamese
    network) follow Long et al.: the box warped to crop_size x crop_size. cat: an :class:`~sopcorr.evaluate.category.EvalCategory`."""
    fns = {}
    for name in names:
        if name.startswith("sift_r"):
            r = float(name[len("sift_r"):])

            def f(i, pts, r=r):
                crop, sc, off = crop_object(cat.image(i), cat.bbox(i), crop_size)
                return sift_descriptors(crop, to_crop(pts, sc, off), r)
            fns[name] = f
        elif name in ("conv4", "conv5"):
            if "conv4" not in fns:
                if conv is None:
                    raise SopcorrError(f"descriptor {name}: no backbone given for the conv rows")
                fns.update(_conv_functions(cat, crop_size, conv))
        elif matchers and name in matchers:
            m = matchers[name]
            describe_image = getattr(m.matcher, "image_descriptors", None)
            if describe_image is not None:
                # a network describes any image: the box warped to crop_size, as SIFT and conv
                def f(i, pts, describe_image=describe_image):
                    crop, sc, off = crop_object(cat.image(i), cat.bbox(i), crop_size)
                    d, grid = describe_image(crop)
                    return map_descriptors(d, grid, to_crop(pts, sc, off))
            else:
                def f(i, pts, m=m):
                    d, grid = m.matcher.descriptors(m.frames[i])
                    return map_descriptors(d, grid, pts)
            fns[name] = f
        else:
            raise SopcorrError(f"unknown classification descriptor '{name}' (or no method given for it)")
    return {n: fns[n] for n in names}


def run_svm_baselines(cat, names, crop_size: int = 128, conv: ConvDescriptorParams | None = None,
                      matchers: dict | None = None, C: float = 1.0, seed: int = 0,
                      progress=False) -> list[dict]:
    """Table 1 (a) for one category: records (method '<descriptor>_svm', category, value %,
    correct, total) for every descriptor of ``names`` (see :func:`descriptor_functions`).
    Progress (images described, per descriptor) goes to the log
    (:func:`sopcorr.progress.counting`)."""
    from ..progress import counting

    train = _keypoint_sets(cat, cat.split_indices("train"))
    test = _keypoint_sets(cat, cat.split_indices("test"))
    fns = descriptor_functions(cat, names, crop_size, conv, matchers)
    out = []
    with counting(progress, total=len(names) * (len(train) + len(test)), desc=f"classify {cat.category}",
                  unit="img", logger=log) as bar:
        for name in names:
            f = fns[name]

            def stack(sets):
                xs, ys = [], []
                for i, pts, y in sets:
                    if len(pts):
                        xs.append(f(i, pts))
                        ys.append(y)
                    bar.update(1)
                if not xs:
                    return np.zeros((0, 1)), np.zeros(0, int)
                return np.concatenate(xs), np.concatenate(ys)

            xtr, ytr = stack(train)
            xte, yte = stack(test)
            c, t = svm_accuracy(xtr, ytr, xte, yte, C=C, seed=seed)
            out.append(dict(method=f"{name}_svm", category=cat.category, value=100.0 * c / max(t, 1),
                            correct=c, total=t))
    return out
