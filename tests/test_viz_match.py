"""The `sopcorr match` figure's pieces: B coloured through an identity correspondence gets A's
own position colours; the confident matches are the highest-scoring valid cells, spread out;
the figure is written for boxes and for whole images."""
import numpy as np

from sopcorr.geometry import DenseCorrespondence, FeatureGrid, Letterbox
from sopcorr.viz.colour import position_colours
from sopcorr.viz.match import colour_by_match, confident_matches, match_figure


def _identity(h, w, size=64, stride=4, score=None):
    grid = FeatureGrid(Letterbox(h, w, size), stride)
    xy = grid.cell_centers_image().astype(np.float32)
    s = np.ones(grid.shape, np.float32) if score is None else score
    return DenseCorrespondence(xy, s, grid.valid_mask(), grid, interpolation="bilinear")


def test_identity_correspondence_gives_b_the_colours_of_a():
    h, w = 40, 64
    corr = _identity(h, w)
    ys, xs = np.mgrid[4:36, 4:60]
    xy = np.stack([xs, ys], -1).astype(float)
    box = (0.0, 0.0, w - 1.0, h - 1.0)
    rgb, mask = colour_by_match(corr, xy, box)
    want, _ = position_colours(xy, box)
    assert mask.all()
    np.testing.assert_allclose(rgb, want, atol=1e-6)
    # a box on B leaves the points outside it uncoloured
    _, mask_b = colour_by_match(corr, xy, box, box_b=(10, 10, 30, 30))
    inside = (xy[..., 0] >= 10) & (xy[..., 0] <= 30) & (xy[..., 1] >= 10) & (xy[..., 1] <= 30)
    assert np.array_equal(mask_b, inside)


def test_only_the_points_in_b_box_are_mapped_in_batches():
    """A read-out correspondence (the network's, costly per point) is asked only for the points
    inside B's box, at most TRANSFER_BATCH at a time, and the colours are those of mapping every
    point at once."""
    from sopcorr.viz import colour

    h, w = 60, 64
    base = _identity(h, w)
    asked = []

    def readout(cells):
        asked.append(len(cells))
        return base.transfer(base.grid.cell_to_image(cells), mode="bilinear")

    corr = DenseCorrespondence(base.target_xy, base.score, base.valid, base.grid, interpolation="readout",
                               point_readout=readout)
    ys, xs = np.mgrid[0:h, 0:w]
    xy = np.stack([xs, ys], -1).astype(float)
    box_a, box_b = (0.0, 0.0, w - 1.0, h - 1.0), (5, 3, 50, 58)
    old = colour.TRANSFER_BATCH
    colour.TRANSFER_BATCH = 1000
    try:
        rgb, mask = colour_by_match(corr, xy, box_a, box_b)
    finally:
        colour.TRANSFER_BATCH = old
    inside = (xy[..., 0] >= 5) & (xy[..., 0] <= 50) & (xy[..., 1] >= 3) & (xy[..., 1] <= 58)
    assert sum(asked) == inside.sum() and max(asked) <= 1000 and len(asked) > 1
    asked.clear()
    rgb_all, mask_all = colour_by_match(corr, xy, box_a)
    assert np.array_equal(mask, mask_all & inside)
    np.testing.assert_array_equal(rgb[mask], rgb_all[mask])


def test_confident_matches_take_the_best_cells_spread_out():
    score = np.zeros((16, 16), np.float32)
    score[3, 3], score[3, 4], score[10, 12], score[8, 1] = 0.9, 0.95, 0.8, 0.7
    corr = _identity(64, 64, score=score)
    src, tgt = confident_matches(corr, 3, min_gap=2)
    cells = corr.grid.image_to_cell(src).round().astype(int)  # (col, row)
    # (3, 4) wins, its neighbour (3, 3) is skipped, then (10, 12) and (8, 1)
    assert [tuple(c[::-1]) for c in cells] == [(3, 4), (10, 12), (8, 1)]
    np.testing.assert_allclose(src, tgt, atol=1e-5)
    # only cells inside box_a, and invalid cells never
    corr.valid[10, 12] = False
    src, _ = confident_matches(corr, 5, box_a=(0, 0, 40, 40), min_gap=2)
    cells = {tuple(c[::-1]) for c in corr.grid.image_to_cell(src).round().astype(int)}
    assert (10, 12) not in cells and (3, 4) in cells
    assert all(0 <= x <= 40 and 0 <= y <= 40 for x, y in src)


def test_figure_is_written_with_and_without_a_box(tmp_path):
    import matplotlib

    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (40, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (50, 30, 3), dtype=np.uint8)
    for k, box in enumerate([None, (5.0, 5.0, 50.0, 30.0)]):
        out = tmp_path / f"f{k}.svg"
        with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text
            match_figure(a, b, _identity(50, 30), out, corr_ab=_identity(40, 64), names=("a.png", "b.png"),
                         box_a=box, lines=3, title="t")
        text = out.read_text()
        assert "a.png" in text and "b.png" in text
        assert ("whole image" in text) == (box is None)
