"""Dense nearest-neighbour matching of two feature grids by cosine similarity.

Every source cell is matched to the target cell of highest cosine similarity among the valid
target cells (optionally only among target cells with the same part label). The result is a
:class:`~sopcorr.geometry.DenseCorrespondence`: target *image* coordinates per source cell,
the similarity as score, and a validity mask.
"""
from __future__ import annotations

import numpy as np
import torch

from ..device import resolve_device
from ..errors import SopcorrError
from ..geometry import DenseCorrespondence, FeatureGrid

__all__ = ["nearest_neighbour", "resolve_device", "similarity_argmax"]


def _flat_normalised(feat: np.ndarray, name: str, device) -> torch.Tensor:
    f = np.asarray(feat)
    if f.ndim != 3:
        raise SopcorrError(f"nearest_neighbour: {name} must be (H, W, C), got shape {f.shape}")
    t = torch.as_tensor(np.ascontiguousarray(f, dtype=np.float32), device=device).reshape(-1, f.shape[2])
    return torch.nn.functional.normalize(t, dim=1, eps=1e-12)


def similarity_argmax(fs: torch.Tensor, ft: torch.Tensor, allowed_t: torch.Tensor,
                      labels_s: torch.Tensor | None = None, labels_t: torch.Tensor | None = None,
                      chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise constrained argmax of the cosine similarity ``fs @ ft.T``.

    fs (Ns, C), ft (Nt, C) L2-normalised; allowed_t (Nt,) bool target cells that may be matched;
    labels_s (Ns,), labels_t (Nt,) optional int labels: a source cell only matches target cells
    of its own label, unless its label is absent from the allowed target cells (then it matches
    any allowed cell). Returns (index (Ns,) long, similarity (Ns,) float; -inf where no target
    cell is allowed)."""
    ns = fs.shape[0]
    idx = torch.zeros(ns, dtype=torch.long, device=fs.device)
    best = torch.full((ns,), -float("inf"), device=fs.device)
    if not bool(allowed_t.any()):
        return idx, best
    present = None
    if labels_s is not None:
        lt_allowed = labels_t[allowed_t]
        present = torch.isin(labels_s, lt_allowed)
    neg = torch.tensor(-float("inf"), device=fs.device)
    for a in range(0, ns, chunk):
        sim = fs[a:a + chunk] @ ft.T                       # (c, Nt)
        mask = allowed_t[None, :].expand_as(sim)
        if labels_s is not None:
            same = labels_s[a:a + chunk, None] == labels_t[None, :]
            mask = mask & (same | ~present[a:a + chunk, None])
        sim = torch.where(mask, sim, neg)
        b, i = sim.max(dim=1)
        best[a:a + chunk], idx[a:a + chunk] = b, i
    return idx, best


def _softargmax_refine(fs, ft, idx, shape_t, allowed_t, temperature: float, radius: int = 1):
    """Sub-cell refinement: softmax(sim / T)-weighted mean of the (2r+1)^2 target cells around
    each argmax (allowed cells only). Returns (Ns, 2) float (col, row)."""
    ht, wt = shape_t
    r0, c0 = idx // wt, idx % wt
    offs = torch.arange(-radius, radius + 1, device=fs.device)
    dr, dc = torch.meshgrid(offs, offs, indexing="ij")
    rr = r0[:, None] + dr.reshape(1, -1)
    cc = c0[:, None] + dc.reshape(1, -1)
    inb = (rr >= 0) & (rr < ht) & (cc >= 0) & (cc < wt)
    flat = rr.clamp(0, ht - 1) * wt + cc.clamp(0, wt - 1)
    ok = inb & allowed_t[flat]
    sim = (fs[:, None, :] * ft[flat]).sum(-1)             # (Ns, K)
    sim = torch.where(ok, sim / temperature, torch.tensor(-float("inf"), device=fs.device))
    w = torch.softmax(sim, dim=1)
    w = torch.nan_to_num(w, nan=0.0)
    col = (w * cc.to(w.dtype)).sum(1)
    row = (w * rr.to(w.dtype)).sum(1)
    return torch.stack([col, row], dim=1)


def nearest_neighbour(feat_src: np.ndarray, feat_tgt: np.ndarray, grid_src: FeatureGrid,
                      grid_tgt: FeatureGrid, valid_src: np.ndarray | None = None,
                      valid_tgt: np.ndarray | None = None, mutual: bool = False,
                      labels_src: np.ndarray | None = None, labels_tgt: np.ndarray | None = None,
                      chunk: int = 4096, refine: str = "none", temperature: float = 0.02,
                      device: str = "cpu") -> DenseCorrespondence:
    """Dense nearest-neighbour correspondence from source to target by cosine similarity.

    feat_src (Hs, Ws, C), feat_tgt (Ht, Wt, C): feature grids (normalised here, so any scale);
    grid_src, grid_tgt: their FeatureGrids (to convert target cells to target image coords);
    valid_src (Hs, Ws), valid_tgt (Ht, Wt) bool: cells to use (default: the grids' valid masks);
    mutual: keep only mutual nearest neighbours (the target cell's best source match is the
    source cell itself, under the same constraints);
    labels_src (Hs, Ws), labels_tgt (Ht, Wt) int: optional part labels; a source cell only
    matches target cells of its own label, or any valid target cell when its label is absent
    from the target;
    chunk: source rows per similarity block (memory: chunk x Ht*Wt floats);
    refine: 'none' (cell centres) or 'softargmax' (softmax(sim/temperature)-weighted mean over
    the 3x3 target cells around the argmax: sub-cell target coordinates);
    device: 'cpu', 'cuda' or 'auto'.

    Returns a DenseCorrespondence on the source grid: target_xy (Hs, Ws, 2) target image coords,
    score (Hs, Ws) float32 cosine similarity of the match, valid (Hs, Ws) bool = valid_src &
    (a target cell was allowed) [& mutual consistency].
    """
    dev = resolve_device(device)
    hs, ws = np.asarray(feat_src).shape[:2]
    ht, wt = np.asarray(feat_tgt).shape[:2]
    if np.asarray(feat_src).shape[-1] != np.asarray(feat_tgt).shape[-1]:
        raise SopcorrError(f"nearest_neighbour: channel mismatch {np.asarray(feat_src).shape} vs "
                           f"{np.asarray(feat_tgt).shape}")
    if tuple(grid_src.shape) != (hs, ws) or tuple(grid_tgt.shape) != (ht, wt):
        raise SopcorrError(f"nearest_neighbour: feature grids {(hs, ws)}/{(ht, wt)} do not match "
                           f"the FeatureGrids {grid_src.shape}/{grid_tgt.shape}")
    vs = grid_src.valid_mask() if valid_src is None else np.asarray(valid_src, bool)
    vt = grid_tgt.valid_mask() if valid_tgt is None else np.asarray(valid_tgt, bool)
    fs = _flat_normalised(feat_src, "feat_src", dev)
    ft = _flat_normalised(feat_tgt, "feat_tgt", dev)
    allowed_s = torch.as_tensor(vs.reshape(-1), device=dev)
    allowed_t = torch.as_tensor(vt.reshape(-1), device=dev)
    ls = lt = None
    if (labels_src is None) != (labels_tgt is None):
        raise SopcorrError("nearest_neighbour: give both labels_src and labels_tgt or neither")
    if labels_src is not None:
        ls = torch.as_tensor(np.asarray(labels_src, np.int64).reshape(-1), device=dev)
        lt = torch.as_tensor(np.asarray(labels_tgt, np.int64).reshape(-1), device=dev)
    with torch.no_grad():
        idx, best = similarity_argmax(fs, ft, allowed_t, ls, lt, chunk)
        ok = allowed_s & torch.isfinite(best)
        if mutual:
            back, _ = similarity_argmax(ft, fs, allowed_s, lt, ls, chunk)
            ok &= back[idx] == torch.arange(len(idx), device=dev)
        if refine == "softargmax":
            cr = _softargmax_refine(fs, ft, idx, (ht, wt), allowed_t, temperature)
        elif refine == "none":
            cr = torch.stack([idx % wt, idx // wt], dim=1).to(torch.float64)
        else:
            raise SopcorrError(f"nearest_neighbour: refine must be 'none' or 'softargmax', got {refine!r}")
    cr = cr.cpu().numpy().astype(np.float64).reshape(hs, ws, 2)
    target_xy = grid_tgt.cell_to_image(cr).astype(np.float32)
    score = torch.where(torch.isfinite(best), best, torch.zeros_like(best)).cpu().numpy()
    # independent per-cell argmaxes: neighbouring cells may match far-apart targets, so keypoints
    # take their nearest cell's match rather than an average of two (measured: +4 PCK@0.1 on
    # PF-WILLOW car); sub-cell refined matches vary smoothly and interpolate
    return DenseCorrespondence(target_xy=target_xy, score=score.reshape(hs, ws).astype(np.float32),
                               valid=ok.cpu().numpy().reshape(hs, ws), grid=grid_src,
                               interpolation="bilinear" if refine == "softargmax" else "nearest")
