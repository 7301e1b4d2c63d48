"""Losses of the correlation network (:mod:`sopcorr.siamese.correlation.net`).

* :func:`dense_infonce`: for every source cell with pseudo ground truth, the cross-entropy
  between the network's matching distribution ``softmax(correlation / temperature)`` over the
  valid target cells and a target distribution around the teacher's target cell: a Gaussian of
  ``sigma`` cells (soft target) or, with ``sigma = 0``, the nearest cell (hard target, InfoNCE
  proper). Each cell's term is weighted by the teacher's confidence; the sum is divided by the
  total weight. With ``symmetric`` the reverse direction is added: the teacher's target cell
  should match back to its source cell among the valid source cells (the teacher's matches are
  forward-backward consistent, so they hold both ways).
* :func:`readout_flow_loss`: the paper's truncated Euclidean loss (Eq. 10) on the kernel
  soft-argmax read-out, in input pixels, divided by T^2 (so it lies in [0, 1]; the minimiser is
  the paper's).

Shapes: corr (B, Ns, Nt) cosine; target (B, Ns, 2) continuous target cell (col, row); weight
(B, Ns) >= 0 (0: no pseudo ground truth); valid_src (B, Ns), valid_tgt (B, Nt) bool.
"""
from __future__ import annotations

import torch

from .net import cell_coordinates, gaussian_1d, masked_logits


def _nearest_index(target: torch.Tensor, shape_tgt: tuple[int, int]) -> torch.Tensor:
    """(B, Ns) flat index of the target cell nearest to (B, Ns, 2) (col, row), clamped to the grid."""
    ht, wt = shape_tgt
    return (target[..., 1].round().clamp(0, ht - 1) * wt + target[..., 0].round().clamp(0, wt - 1)).long()


def target_distribution(target: torch.Tensor, shape_tgt: tuple[int, int], valid_tgt: torch.Tensor,
                        sigma: float) -> torch.Tensor:
    """(B, Ns, Nt) target distribution over the valid target cells: a Gaussian of ``sigma`` cells
    around ``target`` (B, Ns, 2), or one-hot at the nearest cell when ``sigma <= 0``. Rows whose
    Gaussian has no mass on valid cells fall back to the nearest cell. (The loss never builds
    this array; it is the reference the tests compare :func:`soft_cross_entropy` with.)"""
    ht, wt = shape_tgt
    B, Ns, _ = target.shape
    hard = torch.zeros(B, Ns, ht * wt, device=target.device)
    hard.scatter_(2, _nearest_index(target, shape_tgt)[..., None], 1.0)
    if sigma <= 0:
        return hard
    xy = cell_coordinates(ht, wt, target.device)
    d2 = ((xy[None, None] - target[:, :, None]) ** 2).sum(-1)
    q = torch.exp(-d2 / (2.0 * float(sigma) ** 2)) * valid_tgt[:, None, :].float()
    s = q.sum(-1, keepdim=True)
    return torch.where(s > 1e-12, q / s.clamp(min=1e-12), hard)


def soft_cross_entropy(logp: torch.Tensor, target: torch.Tensor, shape_tgt: tuple[int, int],
                       valid_tgt: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, Ns) cross-entropy ``-sum_t q_t log p_t`` of log-probabilities ``logp`` (B, Ns, Nt) with
    :func:`target_distribution` q, computed without building q: the Gaussian is separable, so
    the sums are contractions with its row and column factors."""
    ht, wt = shape_tgt
    B, Ns, _ = logp.shape
    hard = -logp.gather(-1, _nearest_index(target, shape_tgt)[..., None])[..., 0]
    if sigma <= 0:
        return hard
    gr = gaussian_1d(target[..., 1], ht, sigma).exp()          # (B, Ns, Ht)
    gc = gaussian_1d(target[..., 0], wt, sigma).exp()          # (B, Ns, Wt)
    v = valid_tgt.float().reshape(B, ht, wt)
    z = torch.einsum("bnr,brc,bnc->bn", gr, v, gc)
    lp = (logp * valid_tgt[:, None, :].to(logp.dtype)).reshape(B, Ns, ht, wt)
    ce = -torch.einsum("bnr,bnrc,bnc->bn", gr, lp, gc) / z.clamp(min=1e-12)
    return torch.where(z > 1e-12, ce, hard)


def sample_cells(weight: torch.Tensor, n: int | None, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, n) indices of source cells to put in the loss: ``n`` cells per pair drawn without
    replacement among those with weight > 0 (then among the rest, whose weight is 0 and so
    adds nothing); ``n`` None or >= Ns: every cell, in order."""
    B, Ns = weight.shape
    if n is None or n >= Ns:
        return torch.arange(Ns, device=weight.device)[None].expand(B, Ns)
    p = (weight.detach() > 0).float().cpu() + 1e-6
    return torch.multinomial(p, int(n), replacement=False, generator=generator).to(weight.device)


def dense_infonce(desc_src: torch.Tensor, desc_tgt: torch.Tensor, cells: torch.Tensor, target: torch.Tensor,
                  weight: torch.Tensor, shape_src: tuple[int, int], shape_tgt: tuple[int, int],
                  valid_src: torch.Tensor, valid_tgt: torch.Tensor, temperature: float = 0.07,
                  sigma: float = 1.0, symmetric: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidence-weighted dense InfoNCE (module docstring) on the source cells ``cells``.

    desc_src (B, Ns, D), desc_tgt (B, Nt, D) L2-normalised descriptors (cells flattened);
    cells (B, n) source cell indices (:func:`sample_cells`); target (B, n, 2) their teacher
    target cells; weight (B, n). The forward term's negatives are all valid target cells; the
    reverse term (``symmetric``) scores the teacher's target cell against all valid source
    cells. Returns (the loss, a scalar; the forward correlation (B, n, Nt) of the cells, for
    the read-out)."""
    w = weight.float()
    total = w.sum().clamp(min=1e-12)
    ds = desc_src.gather(1, cells[..., None].expand(-1, -1, desc_src.shape[-1]))          # (B, n, D)
    corr = torch.bmm(ds, desc_tgt.transpose(1, 2))                                        # (B, n, Nt)
    logp = torch.log_softmax(masked_logits(corr.float(), valid_tgt, temperature), -1)
    loss = (w * soft_cross_entropy(logp, target, shape_tgt, valid_tgt, sigma)).sum() / total
    if not symmetric:
        return loss, corr
    hs, ws = shape_src
    t_idx = _nearest_index(target, shape_tgt)                                              # (B, n)
    dt = desc_tgt.gather(1, t_idx[..., None].expand(-1, -1, desc_tgt.shape[-1]))          # (B, n, D)
    rev = torch.bmm(dt, desc_src.transpose(1, 2))                                         # (B, n, Ns)
    logp_rev = torch.log_softmax(masked_logits(rev.float(), valid_src, temperature), -1)
    src_xy = cell_coordinates(hs, ws, corr.device)[cells]                                 # (B, n, 2)
    loss_rev = (w * soft_cross_entropy(logp_rev, src_xy, shape_src, valid_src, sigma)).sum() / total
    return 0.5 * (loss + loss_rev), corr


def readout_flow_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, stride: float,
                      T2: float) -> torch.Tensor:
    """Truncated Euclidean loss of read-out cells ``pred`` (B, Ns, 2) against ``target`` (B, Ns, 2),
    both in cells, measured in input pixels (x ``stride``): sum_w min(d^2, T^2) / (T^2 sum_w)."""
    d2 = (((pred - target) * float(stride)) ** 2).sum(-1).clamp(max=float(T2))
    w = weight.float()
    return (w * d2).sum() / (float(T2) * w.sum().clamp(min=1e-12))
