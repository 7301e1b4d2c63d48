"""The pipeline's per-category figures: the keypoint figure shows the best method (the first
figure method, with its location prior where evaluated); the correspondence grid names both
images of every pair."""
import matplotlib
import numpy as np

from sopcorr.geometry import DenseCorrespondence, FeatureGrid, Letterbox
from sopcorr.viz.correspondence import draw_correspondence_grid
from sopcorr.viz.keypoints import keypoint_method


def test_keypoint_figure_method_is_the_first_figure_method_with_its_prior():
    predicted = ["nn_raw", "convflow", "convflow_prior", "ours_finetuned", "ours_geometric", "ours_geometric_prior"]
    assert keypoint_method(predicted, ["ours_geometric", "convflow"]) == "ours_geometric_prior"
    assert keypoint_method(predicted, ["nn_raw", "ours_geometric"]) == "nn_raw"
    assert keypoint_method(["nn_raw", "convflow"], ["ours_geometric", "convflow"]) == "convflow"
    assert keypoint_method(["siftflow"], ["ours_geometric"]) == "siftflow"
    assert keypoint_method([], ["ours_geometric"]) is None


def test_correspondence_grid_names_both_images(tmp_path):
    rng = np.random.default_rng(0)
    grid = FeatureGrid(Letterbox(30, 40, 32), 4)
    corr = DenseCorrespondence(grid.cell_centers_image().astype(np.float32), np.ones(grid.shape, np.float32),
                               grid.valid_mask(), grid)
    rows = [dict(img_a=rng.integers(0, 255, (30, 40, 3), dtype=np.uint8),
                 img_b=rng.integers(0, 255, (30, 40, 3), dtype=np.uint8), box_a=(2, 2, 30, 25), box_b=None,
                 label_a=f"cat/a{k}", label_b=f"cat/b{k}", corr={"ours_geometric": corr, "nn_raw": corr})
            for k in range(2)]
    out = tmp_path / "g.svg"
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        draw_correspondence_grid(rows, ["ours_geometric", "nn_raw"], out)
    text = out.read_text()
    for k in range(2):
        assert f"A: cat/a{k}" in text and f"B: cat/b{k}" in text
    assert "font-weight: 700" in text or "font-weight:700" in text or "bold" in text
