"""Keypoint classification with descriptor baselines (paper Table 1; Long et al. 2014 protocol).

Each object is cropped to its box and warped to ``size x size``; a descriptor is sampled at
each visible ground-truth keypoint; one one-vs-all linear SVM per category (sklearn LinearSVC)
is trained on the train split's keypoints to predict the keypoint name; accuracy is the fraction
of the test split's visible keypoints whose name is predicted. Descriptors are L2-normalised.
"""
from __future__ import annotations

import numpy as np

from ..geometry import FeatureGrid, bilinear_sample


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
def _keypoint_sets(ctx, indices):
    """Visible keypoints of ``indices``: list of (instance index, points (V, 2), name idx (V,))."""
    out = []
    for i in indices:
        kp = ctx.keypoints(int(i))
        vis = kp[:, 2] > 0
        out.append((int(i), kp[vis, :2], np.flatnonzero(vis)))
    return out


def descriptor_functions(ctx, names, crop_size: int, layers=None, device: str = "cpu"):
    """{descriptor name: f(instance index, points (V, 2)) -> (V, D)} for the requested
    ``names``: 'sift_r<radius>', 'conv4', 'conv5' (the backbone's two layers of
    ``conv_row_layers`` or ``layers``), 'ours_embed' (the manifold embedding), 'ours_finetuned'
    (the fine-tuned network's dense descriptor). SIFT and conv descriptors follow Long et al.:
    the box warped to crop_size x crop_size. Unavailable inputs raise MethodUnavailable."""
    from ..geometry import FeatureGrid, Letterbox
    from .methods import MethodUnavailable

    fns = {}
    net = None
    for name in names:
        if name.startswith("sift_r"):
            r = float(name[len("sift_r"):])

            def f(i, pts, r=r):
                crop, sc, off = crop_object(ctx.image(i), ctx.bbox(i), crop_size)
                return sift_descriptors(crop, to_crop(pts, sc, off), r)
            fns[name] = f
        elif name in ("conv4", "conv5"):
            if net is None:
                import torch

                from ..features.backbones import build_backbone, conv_row_layers
                from ..features.extract import combine_layers, preprocess

                bb = ctx.config.get("backbone", {})
                bname = bb.get("name", "efficientnet_lite0")
                lays = list(layers or conv_row_layers(bname))
                if len(lays) != 2:
                    raise MethodUnavailable(f"no conv4/conv5 layers for backbone '{bname}'")
                net = build_backbone(bname, crop_size, layers=lays, weights=bb.get("weights"), device=device)
                cache: dict = {}

                def maps(i):
                    if i not in cache:
                        crop, sc, off = crop_object(ctx.image(i), ctx.bbox(i), crop_size)
                        x, lb = preprocess(crop, crop_size, net.spec.mean, net.spec.std)
                        with torch.no_grad():
                            feats = net(x[None].to(next(net.parameters()).device))
                        cache.clear()
                        cache[i] = ({l: combine_layers(feats, [l], relu=bb.get("relu", True))[0].cpu().numpy()
                                     for l in lays}, lb, sc, off)
                    return cache[i]
            layer = lays[0] if name == "conv4" else lays[1]

            def f(i, pts, layer=layer):
                m, lb, sc, off = maps(i)
                return map_descriptors(m[layer], FeatureGrid(lb, net.strides[layer]), to_crop(pts, sc, off))
            fns[name] = f
        elif name == "ours_embed":
            st = ctx.store("embed")
            fns[name] = lambda i, pts, st=st: map_descriptors(st.load(i), st.grid(i), pts)
        elif name == "ours_finetuned":
            mt = ctx.matcher("finetuned")

            def f(i, pts, mt=mt):
                fm, grid = mt.features(ctx.image(i))
                return map_descriptors(fm, grid, pts)
            fns[name] = f
        else:
            raise MethodUnavailable(f"unknown classification descriptor '{name}'")
    return fns


def run_svm_baselines(ctx, names, crop_size: int = 128, layers=None, C: float = 1.0, seed: int = 0,
                      device: str = "cpu") -> list[dict]:
    """Table 1 (a) for one category: records (method '<descriptor>_svm', category, value %,
    correct, total); descriptors whose inputs are missing are skipped with a logged note."""
    import logging

    from .methods import MethodUnavailable

    log = logging.getLogger(__name__)
    train = _keypoint_sets(ctx, ctx.split_indices("train"))
    test = _keypoint_sets(ctx, ctx.split_indices("test"))
    out = []
    for name in names:
        try:
            f = descriptor_functions(ctx, [name], crop_size, layers, device)[name]
        except MethodUnavailable as exc:
            log.warning("skipping descriptor %s for %s: %s", name, ctx.category, exc)
            continue

        def stack(sets):
            xs = [f(i, pts) for i, pts, _ in sets if len(pts)]
            ys = [y for _, pts, y in sets if len(pts)]
            if not xs:
                return np.zeros((0, 1)), np.zeros(0, int)
            return np.concatenate(xs), np.concatenate(ys)

        xtr, ytr = stack(train)
        xte, yte = stack(test)
        c, t = svm_accuracy(xtr, ytr, xte, yte, C=C, seed=seed)
        out.append(dict(method=f"{name}_svm", category=ctx.category, value=100.0 * c / max(t, 1),
                        correct=c, total=t))
    return out
