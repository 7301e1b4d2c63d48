"""The correlation network's read-out of a point between cell centres (issue 23): the bilinear
interpolation of the four cells' correlation rows, read out by the network's kernel soft-argmax,
instead of the bilinear interpolation of the four cells' matches; and the 'adaptive' transfer,
which interpolates the matches where the four cells agree and reads out the point elsewhere."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sopcorr.geometry import DenseCorrespondence, FeatureGrid, Letterbox
from sopcorr.siamese.correlation.net import correlation, interpolated_rows, kernel_soft_argmax

FIX = Path(__file__).parent / "fixtures" / "checkpoints"


def _bilinear_descriptor_reference(desc: np.ndarray, col: float, row: float) -> np.ndarray:
    """Slow reference: the (D,) bilinear interpolation of a (D, H, W) descriptor grid at a
    continuous (col, row), clamped to the grid, by explicit weights over every cell."""
    d, h, w = desc.shape
    col, row = min(max(col, 0.0), w - 1.0), min(max(row, 0.0), h - 1.0)
    out = np.zeros(d)
    for r in range(h):
        for c in range(w):
            wt = max(0.0, 1 - abs(c - col)) * max(0.0, 1 - abs(r - row))
            out += wt * desc[:, r, c]
    return out


def test_interpolated_rows_are_the_correlation_of_the_interpolated_descriptor():
    g = torch.Generator().manual_seed(0)
    hs, ws, ht, wt, d = 4, 5, 3, 6, 7
    ds = torch.randn(1, d, hs, ws, generator=g, dtype=torch.float64)
    dt = torch.randn(1, d, ht, wt, generator=g, dtype=torch.float64)
    corr = correlation(ds, dt)[0]
    cells = np.array([[0.0, 0.0], [2.0, 3.0], [1.25, 0.5], [3.9, 2.1], [4.0, 1.7], [-1.0, 5.0], [2.5, 2.5]])
    got = interpolated_rows(corr, (hs, ws), torch.as_tensor(cells)).numpy()
    for k, (c, r) in enumerate(cells):
        ref = _bilinear_descriptor_reference(ds[0].numpy(), c, r) @ dt[0].reshape(d, -1).numpy()
        np.testing.assert_allclose(got[k], ref, rtol=1e-10, atol=1e-12)
    # a cell centre gives that cell's row exactly (no rounding)
    assert torch.equal(interpolated_rows(corr, (hs, ws), torch.tensor([[3.0, 2.0]]))[0], corr[2 * ws + 3])


def test_a_rim_point_follows_its_object_cell_not_the_background_cells():
    """Known answer: source cell (1, 1) (col, row) is on the object and matches target cell
    (4, 2) sharply; its neighbour (2, 1) is background, its correlation flat with a faint
    maximum far away at (0, 0). A point a third of the way to the background cell: the matches'
    interpolation lands a third of the way to (0, 0); the network's read-out of the point's
    interpolated row stays on (4, 2)."""
    hs = ws = 3
    ht, wt = 4, 6
    corr = torch.full((hs * ws, ht * wt), 0.1)
    obj, bg = 1 * ws + 1, 1 * ws + 2
    corr[obj, 2 * wt + 4] = 0.9
    corr[bg, 0] = 0.15
    cells, _ = kernel_soft_argmax(corr[None], (ht, wt), temperature=0.07, sigma=2.0)
    cells = cells[0].numpy()
    assert np.allclose(cells[obj], [4, 2], atol=0.05) and np.linalg.norm(cells[bg] - [4, 2]) > 3
    p = torch.tensor([[1 + 1 / 3, 1.0]])
    match_interp = (2 / 3) * cells[obj] + (1 / 3) * cells[bg]
    row = interpolated_rows(corr, (hs, ws), p)
    read, score = kernel_soft_argmax(row[None], (ht, wt), temperature=0.07, sigma=2.0)
    assert np.allclose(read[0, 0].numpy(), [4, 2], atol=0.05)
    assert np.linalg.norm(match_interp - [4, 2]) > 1.0
    assert score[0, 0].item() == pytest.approx((2 / 3) * 0.9 + (1 / 3) * 0.1, abs=1e-6)


def _grid(h=40, w=40, size=40, stride=8):
    return FeatureGrid(Letterbox(h, w, size), stride)


def test_dense_correspondence_readout_mode():
    grid = _grid()
    xy = np.random.default_rng(0).random((5, 5, 2)).astype(np.float32) * 40
    score = np.ones((5, 5), np.float32)
    calls = []

    def read(cells):
        calls.append(np.array(cells))
        return np.full((len(cells), 2), 7.0), np.full(len(cells), 0.5)

    c = DenseCorrespondence(xy, score, grid.valid_mask(), grid, interpolation="readout", point_readout=read)
    pts = np.array([[3.5, 3.5], [11.5, 19.5]])
    got, s = c.transfer(pts)
    assert np.array_equal(got, np.full((2, 2), 7.0)) and np.array_equal(s, [0.5, 0.5])
    np.testing.assert_allclose(calls[0], grid.image_to_cell(pts))   # asked in source cells
    # the explicit modes still use the cells' matches
    assert np.allclose(c.transfer(pts, "nearest")[0], xy[[0, 2], [0, 1]])
    assert c.transfer(np.zeros((0, 2)))[0].shape == (0, 2) and len(calls) == 1
    with pytest.raises(ValueError, match="point_readout"):
        DenseCorrespondence(xy, score, grid.valid_mask(), grid, interpolation="readout")


def _image(h, w, seed):
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(float)
    base = np.stack([np.sin(xs / 7.0 + k) * np.cos(ys / 9.0 - k) for k in range(3)], -1)
    im = 0.35 * base + 0.05 * rng.standard_normal((h, w, 3))
    return np.clip(127 + 110 * im, 0, 255).astype(np.uint8)


def test_the_matcher_reads_out_points_and_keeps_every_cell_centre():
    """A trained correlation network (the fixture checkpoint): the default transfer of a cell
    centre is that cell's match; a point between centres is the kernel soft-argmax of the
    interpolated rows of the network's filtered correlation (recomputed here from the
    descriptors); 'bilinear' keeps interpolating the matches."""
    from sopcorr.matchers.correlation_network import CorrelationNetworkMatcher, CorrelationNetworkParams

    m = CorrelationNetworkMatcher(CorrelationNetworkParams(device="cpu", interpolation="readout"),
                                  FIX / "correlation_model.pt")
    bil = CorrelationNetworkMatcher(CorrelationNetworkParams(device="cpu", interpolation="bilinear"),
                                    FIX / "correlation_model.pt")
    a, b = _image(96, 128, 0), _image(120, 100, 1)
    c = m.match_images(a, b)
    assert c.interpolation == "readout"
    centres = c.grid.cell_centers_image()[c.valid]
    xy, s = c.transfer(centres)
    np.testing.assert_allclose(xy, c.target_xy[c.valid], atol=1e-3)
    np.testing.assert_allclose(s, c.score[c.valid], atol=1e-6)
    pts = np.array([[10.3, 20.7], [64.0, 47.5], [120.2, 3.3]])
    da, ga = m.image_descriptors(a)
    db, gb = m.image_descriptors(b)
    ta = torch.as_tensor(da).permute(2, 0, 1)[None]
    tb = torch.as_tensor(db).permute(2, 0, 1)[None]
    vt = torch.as_tensor(gb.valid_mask().reshape(1, -1))
    corr, _, _ = m.model.match(ta, tb, vt)
    rows = interpolated_rows(corr[0], ga.shape, torch.as_tensor(ga.image_to_cell(pts)))
    ref, ref_s = kernel_soft_argmax(rows[None], gb.shape, vt, m.spec.temperature, m.spec.readout_sigma)
    got, got_s = c.transfer(pts)
    np.testing.assert_allclose(got, gb.cell_to_image(ref[0].double().numpy()), atol=1e-3)
    np.testing.assert_allclose(got_s, ref_s[0].numpy(), atol=1e-5)
    cb = bil.match_images(a, b)
    assert cb.interpolation == "bilinear" and np.array_equal(cb.target_xy, c.target_xy)
    np.testing.assert_allclose(cb.transfer(pts)[0], c.transfer(pts, "bilinear")[0])


def _adaptive_reference(c: DenseCorrespondence, pts: np.ndarray) -> np.ndarray:
    """Slow reference of the 'adaptive' transfer, one point at a time: the four cells around the
    point (clamped at the border); all valid and every match within one target cell of their
    mean -> the bilinear interpolation of the matches, else the point's read-out."""
    cell = c.target_grid.stride / c.target_grid.letterbox.scale
    h, w = c.score.shape
    out = []
    for p in pts:
        col, row = c.grid.image_to_cell(p[None])[0]
        c0, r0 = min(max(int(np.floor(col)), 0), w - 1), min(max(int(np.floor(row)), 0), h - 1)
        quad = [(r, cc) for r in (r0, min(r0 + 1, h - 1)) for cc in (c0, min(c0 + 1, w - 1))]
        q = np.array([c.target_xy[r, cc] for r, cc in quad], np.float64)
        agree = all(c.valid[r, cc] for r, cc in quad) and max(np.linalg.norm(q - q.mean(0), axis=1)) <= cell
        out.append(c.transfer(p[None], "bilinear" if agree else "readout")[0][0])
    return np.array(out)


def test_adaptive_interpolates_agreeing_matches_and_reads_out_the_rest():
    """Known answers on a 5 x 5 source grid (stride 8 px) into a target grid of 4 px cells: a
    smooth shift everywhere but one cell, whose match is far away. Points whose four cells are
    the smooth ones get the matches' interpolation (no read-out asked); points touching the odd
    cell, or an invalid cell, are read out; agreement is measured in target cells."""
    src = _grid()
    tgt = FeatureGrid(Letterbox(20, 20, 20), 4)                  # 4 px cells
    centres = src.cell_centers_image().astype(np.float32)        # (5, 5, 2)
    xy = centres * 0.5 + 1.0                                      # a smooth map: neighbours 4 px = one target cell apart
    xy[3, 3] = [0.0, 19.0]                                        # one cell matches far away
    valid = src.valid_mask().copy()
    valid[0, 4] = False
    score = np.ones((5, 5), np.float32)
    asked = []

    def read(cells):
        asked.append(np.array(cells))
        return np.full((len(cells), 2), -5.0), np.full(len(cells), 0.25)

    c = DenseCorrespondence(xy, score, valid, src, interpolation="adaptive", point_readout=read, target_grid=tgt)
    smooth = np.array([[7.5, 7.5], [12.0, 4.0], [20.0, 16.0]])     # four smooth, valid cells each
    got, s = c.transfer(smooth)
    np.testing.assert_allclose(got, c.transfer(smooth, "bilinear")[0])
    assert np.array_equal(s, [1.0, 1.0, 1.0]) and not asked
    odd = np.array([[24.0, 24.0], [30.0, 26.0], [35.0, 3.0]])      # touch cell (3, 3); the last touches invalid (0, 4)
    got, s = c.transfer(odd)
    assert np.array_equal(got, np.full((3, 2), -5.0)) and np.array_equal(s, [0.25] * 3)
    np.testing.assert_allclose(asked[0], src.image_to_cell(odd))   # only the disagreeing points, in source cells
    mixed = np.concatenate([smooth, odd])[[3, 0, 4, 1, 5, 2]]
    np.testing.assert_allclose(c.transfer(mixed)[0], _adaptive_reference(c, mixed))
    # the same map into a target grid of 1 px cells: the smooth matches (2 px apart) disagree
    fine = DenseCorrespondence(xy, score, valid, src, interpolation="adaptive", point_readout=read,
                               target_grid=FeatureGrid(Letterbox(20, 20, 20), 1))
    assert not fine.agreeing(src.image_to_cell(smooth)).any()
    with pytest.raises(ValueError, match="target_grid"):
        DenseCorrespondence(xy, score, valid, src, interpolation="adaptive", point_readout=read)
    plain = DenseCorrespondence(xy, score, valid, src, interpolation="readout", point_readout=read)
    with pytest.raises(ValueError, match="target_grid"):
        plain.transfer(smooth, "adaptive")


def test_the_matchers_transfer_adaptively_by_default():
    """The fixture network's default transfer is 'adaptive': per point, its read-out or its
    matches' interpolation as the four cells agree (slow reference), with both kinds present."""
    from sopcorr.matchers.correlation_network import CorrelationNetworkMatcher, CorrelationNetworkParams

    m = CorrelationNetworkMatcher(CorrelationNetworkParams(device="cpu"), FIX / "correlation_model.pt")
    c = m.match_images(_image(96, 128, 0), _image(120, 100, 1))
    assert c.interpolation == "adaptive" and c.target_grid is not None
    pts = np.random.default_rng(3).random((200, 2)) * [127, 95]
    agree = c.agreeing(c.grid.image_to_cell(pts))
    assert 0 < agree.sum() < len(pts)
    # the reference reads points out one at a time, the matcher all at once: the network's float32
    # read-out may round differently with the batch's shape on some CPUs (a few ulp of ~100 px);
    # a wrong choice between read-out and interpolation is off by pixels
    np.testing.assert_allclose(c.transfer(pts)[0], _adaptive_reference(c, pts), rtol=0, atol=1e-4)
