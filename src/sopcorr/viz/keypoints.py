"""Keypoint predictions against ground truth over query images (the paper's Figure 6, right):
ground truth as red circles, predictions as yellow crosses, a thin line joining each visible
ground-truth keypoint to its prediction; names predicted absent are not drawn."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def draw_keypoint_predictions(panels, out: str | Path, title: str = "", ncol: int = 4) -> None:
    """panels: list of dicts with image (uint8 (H, W, 3)), gt (P, 3) x, y, visible,
    xy (P, 2) predictions, present (P,) bool, label (str)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import save_plot
    from .axes import hide_axes

    n = max(1, len(panels))
    ncol = min(ncol, n)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.6 * nrow), squeeze=False)
    for ax in axes.ravel():
        hide_axes(ax)
    for ax, p in zip(axes.ravel(), panels):
        ax.imshow(p["image"])
        gt = np.asarray(p["gt"], float)
        xy = np.asarray(p["xy"], float)
        present = np.asarray(p["present"], bool)
        vis = gt[:, 2] > 0
        for k in range(len(gt)):
            if vis[k] and present[k]:
                ax.plot([gt[k, 0], xy[k, 0]], [gt[k, 1], xy[k, 1]], "-", color="white", lw=0.6, alpha=0.7)
        ax.plot(gt[vis, 0], gt[vis, 1], "o", mfc="none", mec="red", ms=6, mew=1.2)
        ax.plot(xy[present, 0], xy[present, 1], "x", color="yellow", ms=6, mew=1.5)
        ax.set_title(p.get("label", ""), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_plot(fig, out, 100, compress_level=3)


def keypoint_method(predicted, methods) -> str | None:
    """The method a keypoint figure shows: the first of ``methods`` (the figure methods, the
    project's best first) that the keypoint evaluation predicted, as its ``<m>_prior`` variant
    when that was evaluated too (keypoint localisation with the location prior); else the first
    predicted method; None when nothing was predicted."""
    predicted = list(predicted)
    for m in methods:
        if f"{m}_prior" in predicted:
            return f"{m}_prior"
        if m in predicted:
            return m
    return predicted[0] if predicted else None


def keypoint_figure(cat, records_json: str | Path, out: str | Path, methods=(), max_panels: int = 8) -> None:
    """Figure-6 panels of a category's test queries (cat: an
    :class:`~sopcorr.evaluate.category.EvalCategory`) from the keypoint evaluation's
    predictions, for the method :func:`keypoint_method` picks from ``methods``."""
    import json

    with open(records_json) as fh:
        preds = json.load(fh).get("predictions", {})
    method = keypoint_method(preds, methods)
    panels = []
    for p in (preds.get(method, []) if method else [])[:max_panels]:
        xy = np.array([[np.nan if v is None else v for v in row] for row in p["xy"]], float)
        panels.append(dict(image=cat.image(int(p["index"])), gt=np.asarray(p["gt"], float), xy=xy,
                           present=np.asarray(p["present"], bool), label=p["id"]))
    draw_keypoint_predictions(panels, out, title=f"{cat.category}: {method or 'no method'} "
                              "(red o: ground truth, yellow x: prediction)")
