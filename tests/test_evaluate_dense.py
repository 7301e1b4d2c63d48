import numpy as np

from evaluate_toys import SIZE, affine, exact_correspondence
from sopcorr.evaluate.dense import evaluate_dense_pair, sample_points


def gt_field(s, t):
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    ss, os_ = affine(s)
    st, ot = affine(t)
    u = (np.stack([xs, ys], -1) - os_) / ss
    f = st * u + ot
    on = ((u >= 0.1) & (u <= 0.9)).all(-1)
    f[~on] = np.nan
    return f


def test_dense_metrics_known_warp():
    f = gt_field(1, 2)
    _, o = affine(2)
    box = (o[0], o[1], o[0] + affine(2)[0], o[1] + affine(2)[0])
    res = evaluate_dense_pair(exact_correspondence(1, 2), f, box, (0.05, 0.1), stride=2)
    assert res["epe_px"] < 1e-9 and res["pck@0.05"] == 1.0 and res["pck@0.1"] == 1.0
    res = evaluate_dense_pair(exact_correspondence(1, 2, shift=(0.0, 3.0)), f, box, (0.05, 0.1), stride=2)
    assert abs(res["epe_px"] - 3.0) < 1e-9 and res["pck@0.05"] == 0.0 and res["pck@0.1"] == 1.0


def test_sampling_only_defined_pixels():
    f = np.full((10, 10, 2), np.nan)
    f[5, 3] = (1.0, 2.0)  # sampled: offset stride // 2 = 1
    src, gt = sample_points(f, 2)
    assert src.tolist() == [[3.0, 5.0]] and gt.tolist() == [[1.0, 2.0]]
