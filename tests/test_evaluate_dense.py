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


def test_subsampled_ground_truth_matches_full(tmp_path):
    from PIL import Image

    from sopcorr.data import groundtruth as gt
    from sopcorr.data.model import CategorySpec, Dataset, Instance
    from sopcorr.evaluate.dense import ground_truth_field
    from sopcorr.evaluate.category import EvalCategory

    insts = []
    for i in (1, 2):
        f = gt_field(0, i)  # canonical coordinates: the map from a reference instance 0
        canon = np.where(np.isfinite(f), f / 64.0, np.nan).astype(np.float32)
        parts = np.isfinite(canon).all(-1).astype(np.uint8)
        np.save(tmp_path / f"c{i}.npy", canon)
        Image.fromarray(parts).save(tmp_path / f"p{i}.png")
        insts.append(Instance(f"t/{i}", f"{i}.png", "t", (0, 0, 63, 63), {}, "test",
                              parts=f"p{i}.png", canonical=f"c{i}.npy"))
    ctx = EvalCategory(Dataset("t", tmp_path, {"t": CategorySpec(["a"])}, insts))
    full = gt.dense_correspondence(np.load(tmp_path / "c1.npy"), gt.read_parts(tmp_path / "p1.png"),
                                   np.load(tmp_path / "c2.npy"), gt.read_parts(tmp_path / "p2.png"))
    sub = ground_truth_field(ctx, 0, 1, stride=4)
    src_s, gt_s = sample_points(sub, 4)
    src_f, gt_f = sample_points(full, 4)
    assert len(src_s) > 20
    np.testing.assert_array_equal(src_s, src_f)
    np.testing.assert_array_equal(gt_s, gt_f)
