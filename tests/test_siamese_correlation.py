"""The correlation network: read-out and loss known answers, grid augmentation, a head that
learns a synthetic correspondence, checkpoints and resume."""
import numpy as np
import pytest
import torch

from sopcorr.siamese.correlation.net import (MASKED, NetworkSpec, build_network, cell_coordinates, correlation,
                                         kernel_soft_argmax, consensus_radius, neighbourhood_consensus, residual_descriptors,
                                         soft_mutual)
from sopcorr.siamese.correlation.data import GridPairs, Teacher, add_keypoints, flip_batch, teacher_from_arrays
from sopcorr.siamese.correlation.losses import (dense_infonce, readout_flow_loss, sample_cells, soft_cross_entropy,
                                    target_distribution)
from sopcorr.siamese.correlation.train import CorrelationSettings


def _spec(C=8, H=6, **kw):
    base = dict(backbone="none", input_size=H * 4, layers=("x",), relu=False, in_channels=C, stride=4,
                hidden_channels=16, descriptor_dim=8)
    base.update(kw)
    return NetworkSpec(**base)


# ------------------------------------------------------------------ read-out


@pytest.mark.parametrize("sigma", [0.0, 2.0])
def test_soft_argmax_of_a_one_hot_correlation_is_that_cell(sigma):
    ht, wt = 5, 7
    corr = torch.zeros(1, 3, ht * wt)
    cells = [(2, 1), (6, 4), (0, 0)]  # (col, row)
    for k, (c, r) in enumerate(cells):
        corr[0, k, r * wt + c] = 1.0
    xy, score = kernel_soft_argmax(corr, (ht, wt), temperature=0.01, sigma=sigma)
    assert torch.allclose(xy[0], torch.tensor(cells, dtype=torch.float32), atol=1e-4)
    assert torch.allclose(score, torch.ones(1, 3))


def test_soft_argmax_ignores_invalid_cells_and_interpolates():
    ht, wt = 1, 4
    # best cell 3 is invalid; among valid cells, 1 and 2 tie -> the expectation lies halfway
    corr = torch.tensor([[[0.0, 1.0, 1.0, 5.0]]])
    valid = torch.tensor([[True, True, True, False]])
    xy, _ = kernel_soft_argmax(corr, (ht, wt), valid, temperature=0.01, sigma=0.0)
    assert xy[0, 0, 0].item() == pytest.approx(1.5, abs=1e-4)


def test_kernel_suppresses_a_distant_second_mode():
    ht, wt = 1, 20
    corr = torch.zeros(1, 1, wt)
    corr[0, 0, 2], corr[0, 0, 17] = 1.0, 0.98  # two modes far apart
    plain, _ = kernel_soft_argmax(corr, (ht, wt), temperature=0.1, sigma=0.0)
    kern, _ = kernel_soft_argmax(corr, (ht, wt), temperature=0.1, sigma=1.5)
    assert abs(kern[0, 0, 0].item() - 2.0) < 0.1 < abs(plain[0, 0, 0].item() - 2.0)


# ------------------------------------------------------------------ losses


def test_soft_cross_entropy_equals_the_explicit_target_distribution():
    g = torch.Generator().manual_seed(0)
    B, Ns, ht, wt = 2, 5, 4, 6
    logp = torch.log_softmax(torch.randn(B, Ns, ht * wt, generator=g), -1)
    target = torch.rand(B, Ns, 2, generator=g) * torch.tensor([wt - 1, ht - 1])
    valid = torch.rand(B, ht * wt, generator=g) > 0.3
    for sigma in (0.0, 0.7, 2.0):
        q = target_distribution(target, (ht, wt), valid, sigma)
        assert torch.allclose(q.sum(-1), torch.ones(B, Ns))
        ref = -(q * logp).sum(-1)
        assert torch.allclose(soft_cross_entropy(logp, target, (ht, wt), valid, sigma), ref, atol=1e-5)


def _one_hot_desc(h, w):
    """(1, N, N) descriptors: cell n is the n-th basis vector (orthonormal)."""
    return torch.eye(h * w)[None]


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_infonce_on_identical_descriptors_is_minimal_at_the_identity(symmetric, sigma):
    h, w = 4, 5
    n = h * w
    d = _one_hot_desc(h, w)
    valid = torch.ones(1, n, dtype=torch.bool)
    cells = torch.arange(n)[None]
    ident = cell_coordinates(h, w)[None]
    weight = torch.ones(1, n)

    def loss(target):
        return dense_infonce(d, d, cells, target, weight, (h, w), (h, w), valid, valid, 0.05, sigma, symmetric)[0]

    best = loss(ident)
    if sigma == 0:  # hard target, orthonormal descriptors: -log(1 / (1 + (n-1) e^{-1/tau}))
        assert best.item() == pytest.approx(np.log1p((n - 1) * np.exp(-20.0)), abs=1e-6)
    for shift in ([1.0, 0.0], [0.0, 1.0], [2.0, 1.0]):
        target = (ident + torch.tensor(shift)).clamp(max=torch.tensor([w - 1.0, h - 1.0]))
        assert loss(target) > best + 0.5
    # and its gradient with respect to the descriptors vanishes for the hard target
    if sigma == 0:
        dd = d.clone().requires_grad_(True)
        dense_infonce(dd, dd, cells, ident, weight, (h, w), (h, w), valid, valid, 0.05, 0.0, symmetric)[0].backward()
        assert dd.grad.abs().max() < 1e-6


def test_infonce_weights_and_samples():
    g = torch.Generator().manual_seed(1)
    h, w, D = 3, 4, 6
    n = h * w
    ds = torch.nn.functional.normalize(torch.randn(2, n, D, generator=g), dim=-1)
    dt = torch.nn.functional.normalize(torch.randn(2, n, D, generator=g), dim=-1)
    valid = torch.ones(2, n, dtype=torch.bool)
    target = torch.rand(2, n, 2, generator=g) * 2
    weight = torch.zeros(2, n)
    weight[0, 3] = 1.0
    cells = torch.arange(n)[None].expand(2, n)
    full, corr = dense_infonce(ds, dt, cells, target, weight, (h, w), (h, w), valid, valid, 0.1, 0.0, False)
    assert corr.shape == (2, n, n)
    one, _ = dense_infonce(ds, dt, torch.tensor([[3], [0]]), target[:, [3]], weight[:, [3]], (h, w), (h, w),
                           valid, valid, 0.1, 0.0, False)
    assert full.item() == pytest.approx(one.item(), rel=1e-5)  # only the weighted cell counts
    idx = sample_cells(weight, 2, torch.Generator().manual_seed(0))
    assert idx.shape == (2, 2) and 3 in idx[0].tolist()  # the only positive cell is always drawn
    assert sample_cells(weight, None).shape == (2, n)


def _consensus_reference(c, hs, ws, ht, wt, r):
    """Loop reference of neighbourhood_consensus: mean of c(s + d, t + d) over in-bounds offsets."""
    C = c.reshape(c.shape[0], hs, ws, ht, wt)
    out = torch.zeros_like(C)
    for b in range(C.shape[0]):
        for y in range(hs):
            for x in range(ws):
                for v in range(ht):
                    for u in range(wt):
                        vals = [C[b, y + dy, x + dx, v + dy, u + dx] for dy in range(-r, r + 1) for dx in range(-r, r + 1)
                                if 0 <= y + dy < hs and 0 <= x + dx < ws and 0 <= v + dy < ht and 0 <= u + dx < wt]
                        out[b, y, x, v, u] = sum(vals) / len(vals)
    return out.reshape(c.shape)


@pytest.mark.parametrize("radius", [1, 2])
def test_neighbourhood_consensus_equals_the_loop_reference(radius):
    g = torch.Generator().manual_seed(radius)
    c = torch.randn(2, 3 * 4, 5 * 3, generator=g)
    got = neighbourhood_consensus(c, (3, 4), (5, 3), radius)
    torch.testing.assert_close(got, _consensus_reference(c, 3, 4, 5, 3, radius), atol=1e-6, rtol=0)
    assert neighbourhood_consensus(c, (3, 4), (5, 3), 0) is c


def test_consensus_radius_is_a_share_of_the_grid():
    assert [consensus_radius(1 / 16, (g, g)) for g in (7, 8, 16, 24, 28, 44)] == [0, 1, 1, 2, 2, 3]
    assert consensus_radius(0.0, (28, 28)) == 0 and consensus_radius(0.1, (10, 30)) == 3


def test_neighbourhood_consensus_prefers_the_consistent_displacement():
    """Two candidate targets with the same cosine for a cell: the one whose neighbours move by the
    same displacement wins after the consensus, an isolated look-alike loses."""
    h = w = 5
    n = h * w
    c = torch.zeros(1, n, n)
    shift = 1  # every cell (y, x) -> (y, x + 1) where inside: the consistent flow
    for y in range(h):
        for x in range(w - shift):
            c[0, y * w + x, y * w + x + shift] = 1.0
    s = 2 * w + 1                                  # cell (2, 1): its true match (2, 2)
    c[0, s, 4 * w + 4] = 1.0                       # an isolated distractor (4, 4) with the same cosine
    out = neighbourhood_consensus(c, (h, w), (h, w), 1)
    assert out[0, s, 2 * w + 2] > out[0, s, 4 * w + 4]


def test_soft_mutual_known_answer_and_mutual_matches_kept():
    """c' = c (c / row max) (c / column max) on c clipped at 0: a mutual best match keeps its
    value, a row's best that is not its column's best is damped, negatives become 0."""
    c = torch.tensor([[[0.9, 0.2, -0.3],
                       [0.8, 0.4, 0.1]]])
    got = soft_mutual(c)
    want = torch.tensor([[[0.9, 0.2 * (0.2 / 0.9) * (0.2 / 0.4), 0.0],
                          [0.8 * (0.8 / 0.8) * (0.8 / 0.9), 0.4 * (0.4 / 0.8) * 1.0, 0.1 * (0.1 / 0.8) * 1.0]]])
    torch.testing.assert_close(got, want)
    assert got[0, 1].argmax() == 0 and got[0, 1, 0] < c[0, 1, 0]   # row 1's best (col 0) is row 0's: damped


def test_residual_descriptors_mix_the_raw_and_learned_cosines():
    g = torch.Generator().manual_seed(0)
    grid = torch.randn(2, 6, 3, 3, generator=g)
    learned = torch.nn.functional.normalize(torch.randn(2, 4, 3, 3, generator=g), dim=1)
    a = 0.3
    d = residual_descriptors(grid, learned, a)
    assert d.shape == (2, 10, 3, 3)
    torch.testing.assert_close(d.norm(dim=1), torch.ones(2, 3, 3))
    gu = torch.nn.functional.normalize(grid, dim=1)
    want = a * correlation(gu[:1], gu[1:]) + (1 - a) * correlation(learned[:1], learned[1:])
    torch.testing.assert_close(correlation(d[:1], d[1:]), want, atol=1e-5, rtol=0)
    assert residual_descriptors(grid, learned, 0.0) is learned
    with pytest.raises(Exception, match="raw_weight"):
        _spec(raw_weight=1.0)


def test_readout_flow_loss_is_truncated_and_normalised():
    pred = torch.tensor([[[0.0, 0.0], [10.0, 0.0]]])
    tgt = torch.zeros(1, 2, 2)
    w = torch.ones(1, 2)
    # stride 4: errors 0 and 40 px; T^2 = 100 -> (0 + 100) / (100 * 2)
    assert readout_flow_loss(pred, tgt, w, 4, 100.0).item() == pytest.approx(0.5)


# ------------------------------------------------------------------ grids and augmentation


def test_teacher_targets_are_target_cells():
    from sopcorr.geometry import FeatureGrid, Letterbox

    grids = [FeatureGrid(Letterbox(30, 40, 32), 8), FeatureGrid(Letterbox(40, 20, 32), 8)]
    cells = np.array([[[1.0, 2.0]]])                                  # target cell (col 1, row 2)
    txy = grids[1].cell_to_image(cells)[None]                          # (1, 1, 1, 2) image coords
    t = teacher_from_arrays([(0, 1)], txy, np.ones((1, 1, 1), bool), np.array([[[1.7]]]), grids)
    assert np.allclose(t.target, [[[[1.0, 2.0]]]]) and t.weight.item() == 1.0  # score clipped to 1
    t = teacher_from_arrays([(0, 1)], txy, np.zeros((1, 1, 1), bool), np.array([[[0.5]]]), grids)
    assert t.weight.item() == 0.0


def test_keypoints_override_their_cells():
    from sopcorr.geometry import FeatureGrid, Letterbox

    grids = [FeatureGrid(Letterbox(32, 32, 32), 8)] * 2
    t = Teacher(np.array([[0, 1]]), np.zeros((1, 4, 4, 2), np.float32), np.full((1, 4, 4), 0.3, np.float32))
    kps = np.array([[[12.0, 4.0, 1], [0.0, 0.0, 0]], [[27.5, 19.5, 1], [5.0, 5.0, 1]]])  # (N=2, K=2, 3)
    out = add_keypoints(t, kps, grids, np.ones((2, 4, 4), bool), 2.0)
    # source keypoint (12, 4) lies in cell (col 1, row 0); target (27.5, 19.5) is cell (3.0, 2.0)
    assert out.weight[0, 0, 1] == 2.0 and np.allclose(out.target[0, 0, 1], [3.0, 2.0])
    assert (out.weight > 0.3).sum() == 1  # the second keypoint is invisible in the source


def test_flip_batch_keeps_correspondences():
    B, C, H, W = 1, 3, 4, 6
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.randn(B, C, H, W, generator=g), torch.randn(B, C, H, W, generator=g)
    vs = torch.zeros(B, H, W, dtype=torch.bool)
    vs[:, :, :5] = True                                   # source image spans 5 columns
    vt = torch.zeros(B, H, W, dtype=torch.bool)
    vt[:, :3, :] = True                                   # target: 6 columns, 3 rows
    target = torch.rand(B, H, W, 2, generator=g) * torch.tensor([5.0, 2.0])
    weight = torch.rand(B, H, W, generator=g) * vs
    b = dict(src=src, tgt=tgt, valid_src=vs, valid_tgt=vt, target=target, weight=weight)
    f = flip_batch(b, torch.tensor([True]))
    for r in range(H):
        for c in range(5):
            cf = 4 - c                                    # where source cell c lands
            assert torch.equal(f["src"][0, :, r, cf], src[0, :, r, c])
            assert f["weight"][0, r, cf] == weight[0, r, c]
            col, row = target[0, r, c].tolist()
            assert f["target"][0, r, cf].tolist() == pytest.approx([5 - col, row])
    # a target cell's features move to the flipped target column
    assert torch.equal(f["tgt"][0, :, 1, 5], tgt[0, :, 1, 0])
    assert torch.equal(flip_batch(b, torch.tensor([False]))["src"], src)


# ------------------------------------------------------------------ learning


def _shift_task(n_img, H, W, C, shift, seed):
    """Grids whose first half of channels is shared content and second half independent noise in
    source and target; the target is the source's content shifted by ``shift`` (cols, rows)."""
    g = torch.Generator().manual_seed(seed)
    content = torch.randn(n_img, C // 2, H, W, generator=g)
    src = torch.cat([content, 2.0 * torch.randn(n_img, C // 2, H, W, generator=g)], 1)
    moved = torch.roll(content, shifts=(shift[1], shift[0]), dims=(2, 3))
    tgt = torch.cat([moved, 2.0 * torch.randn(n_img, C // 2, H, W, generator=g)], 1)
    return src, tgt


def _readout_accuracy(model, src, tgt, shift):
    H, W = src.shape[-2:]
    with torch.no_grad():
        cells, _ = model(src, tgt)
    ij = cell_coordinates(H, W)
    expect = ij + torch.tensor(shift, dtype=torch.float32)
    inside = (expect[:, 0] < W) & (expect[:, 1] < H)
    err = (cells - expect).abs().max(-1).values[:, inside]
    return float((err < 0.5).float().mean())


def test_head_trained_on_a_synthetic_shift_learns_it(tmp_path):
    from sopcorr.siamese.correlation.train import fit

    H = W = 6
    C = 16
    shift = (1, 2)
    src, tgt = _shift_task(12, H, W, C, shift, seed=0)
    grids = torch.cat([src, tgt]).permute(0, 2, 3, 1).half()
    valid = torch.ones(24, H, W, dtype=torch.bool)
    cells = cell_coordinates(H, W).reshape(H, W, 2) + torch.tensor(shift, dtype=torch.float32)
    ok = (cells[..., 0] < W) & (cells[..., 1] < H)
    teacher = Teacher(np.array([[i, 12 + i] for i in range(12)]), np.repeat(cells[None].numpy(), 12, 0),
                      np.repeat(ok[None].float().numpy(), 12, 0))
    data = GridPairs(grids, valid, teacher, stride=4, input_size=24)
    torch.manual_seed(0)
    model = build_network(_spec(C=C, H=H, hidden_channels=32, descriptor_dim=16, kernel_size=1,
                                temperature=0.1, readout_sigma=1.0), with_encoder=False)
    test_src, test_tgt = _shift_task(4, H, W, C, shift, seed=1)   # unseen grids
    before = _readout_accuracy(model, test_src, test_tgt, shift)
    cfg = CorrelationSettings(steps=150, batch_size=4, lr=1e-2, flip=False, checkpoint_every=1000, target_sigma=0.5)
    hist = fit(model, data, cfg, tmp_path / "m.pt", device="cpu", progress=False)
    after = _readout_accuracy(model.eval(), test_src, test_tgt, shift)
    assert np.mean(hist[-10:]) < np.mean(hist[:10])
    assert after > 0.9 > before + 0.3, (before, after)


def _toy_data(n=6, H=4, C=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    grids = torch.randn(n, H, H, C, generator=g).half()
    pairs = np.array([[i, (i + 1) % n] for i in range(n)])
    target = (torch.rand(n, H, H, 2, generator=g) * (H - 1)).numpy()
    return GridPairs(grids, torch.ones(n, H, H, dtype=torch.bool), Teacher(pairs, target, np.ones((n, H, H), np.float32)),
                     stride=4, input_size=4 * H)


def test_fit_resume_after_kill_equals_uninterrupted_and_round_trips(tmp_path):
    from sopcorr.siamese.checkpoint import load_checkpoint, model_from_checkpoint
    from sopcorr.siamese.correlation.train import fit

    data = _toy_data()
    cfg = CorrelationSettings(steps=4, batch_size=2, lr=1e-2, checkpoint_every=100, seed=3, cells_per_pair=5)

    def net(seed):
        torch.manual_seed(seed)
        return build_network(_spec(H=4), with_encoder=False)

    full = tmp_path / "full.pt"
    h_full = fit(net(0), data, cfg, full, device="cpu", progress=False)
    killed = tmp_path / "killed.pt"
    fit(net(0), data, cfg, killed, device="cpu", progress=False, stop_after=2)
    assert killed.with_name("killed.pt.state.pt").is_file() and not killed.exists()
    h2 = fit(net(5), data, cfg, killed, device="cpu", progress=False)
    assert h2 == h_full
    a, b = load_checkpoint(full), load_checkpoint(killed)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert a["spec"]["architecture"] == "correlation" and not a["spec"]["encoder_trained"]
    m = model_from_checkpoint(a, with_encoder=False)
    x = data.grids[:2].permute(0, 3, 1, 2).float()
    ref = net(0)
    ref.load_state_dict(a["model"])
    assert torch.allclose(m.describe(x), ref.describe(x))


def test_masked_constant_is_exactly_zero_after_softmax():
    assert torch.softmax(torch.tensor([0.0, MASKED + 30.0]), 0)[1].item() == 0.0
    a = torch.nn.functional.normalize(torch.randn(1, 3, 2, 2), dim=1)
    assert torch.allclose(correlation(a, a).diagonal(dim1=1, dim2=2), torch.ones(1, 4), atol=1e-6)
