"""Dense correspondence colour maps (the paper's Figures 1/2) for several methods side by side.

Each row is one pair (A, B), both named: A's object box coloured by position, then B coloured by
the colour of the point of A each of its pixels matches, one panel per method (correspondence
B -> A, the colour scheme of ``sopcorr match``). Pixels whose match is undefined or falls outside
A's box stay uncoloured. The first method is the project's best (``evaluate.figure_methods``
lists it first): its panels are titled in bold, the baselines follow.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..io import save_plot
from .axes import hide_axes
from .colour import colour_by_match
from .colour import overlay as _overlay
from .colour import pixel_coords as _coords
from .colour import position_colours

log = logging.getLogger(__name__)


def colour_target(corr_ba, img_b: np.ndarray, box_a, box_b=None) -> tuple[np.ndarray, np.ndarray]:
    """Colours (Hb, Wb, 3) and mask (Hb, Wb) of image B's pixels by their match in A's box;
    only pixels inside ``box_b`` (default: all) are coloured, and only those are mapped
    (:func:`sopcorr.viz.colour.colour_by_match`)."""
    hb, wb = img_b.shape[:2]
    return colour_by_match(corr_ba, _coords(hb, wb), box_a, box_b)


def overlay(img: np.ndarray, rgb: np.ndarray, mask: np.ndarray, alpha: float = 0.65) -> np.ndarray:
    """:func:`sopcorr.viz.colour.overlay` with this figure's opacity."""
    return _overlay(img, rgb, mask, alpha)


def draw_correspondence_grid(rows, method_names: list[str], out: str | Path, title: str = "") -> None:
    """rows: list of dicts with img_a, img_b (uint8 (H, W, 3)), box_a, box_b, label_a, label_b
    (the images' names), and corr: {method: DenseCorrespondence B -> A}. Writes one figure
    (rows x (1 + methods)); the first method's panels are titled in bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = 1 + len(method_names)
    nrow = max(1, len(rows))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.2 * ncol, 2.3 * nrow), squeeze=False)
    for r, row in enumerate(rows):
        a, b = row["img_a"], row["img_b"]
        rgb_a, in_a = position_colours(_coords(*a.shape[:2]), row["box_a"])
        axes[r, 0].imshow(overlay(a, rgb_a, in_a))
        axes[r, 0].set_title(f"A: {row.get('label_a', '')}", fontsize=7)
        for j, m in enumerate(method_names):
            ax = axes[r, 1 + j]
            corr = row["corr"].get(m)
            weight = "bold" if j == 0 else "normal"
            if corr is None:
                ax.imshow(b)
                ax.set_title(f"{m} (n/a)", fontsize=7, fontweight=weight)
            else:
                rgb, mask = colour_target(corr, b, row["box_a"], row.get("box_b"))
                ax.imshow(overlay(b, rgb, mask))
                ax.set_title(m, fontsize=7, fontweight=weight)
            ax.text(0.5, -0.02, f"B: {row.get('label_b', '')}", transform=ax.transAxes, ha="center",
                    va="top", fontsize=6)
    for ax in axes.ravel():
        hide_axes(ax)
    if not rows:
        axes[0, 0].text(0.5, 0.5, "no pairs", ha="center")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_plot(fig, out, 100, compress_level=3)


def figure_pairs(cat, n_pairs: int = 2) -> list[tuple[int, int]]:
    """The (A, B) instance pairs of :func:`correspondence_figure`: the first evaluation pairs
    with distinct source images, else consecutive test instances (each matched B -> A)."""
    n = int(n_pairs)
    pairs, seen = [], set()
    for a, b in cat.pairs(None, 0):  # prefer pairs with distinct source images
        if a not in seen and len(pairs) < n:
            pairs.append((a, b))
            seen.add(a)
    if len(pairs) < n:
        test = [int(i) for i in cat.split_indices("test")] or list(range(len(cat.instances)))
        pairs += [(test[i], test[(i + 1) % len(test)]) for i in range(min(n - len(pairs), len(test)))
                  if len(test) > 1]
    return pairs


def correspondence_figure(cat, methods, out: str | Path, n_pairs: int = 2, progress: bool = False) -> None:
    """The colour-map figure of ``n_pairs`` pairs of a category (an
    :class:`~sopcorr.evaluate.category.EvalCategory`): the first evaluation pairs with distinct
    source images, else consecutive test instances; one panel per method of ``methods``
    (:class:`~sopcorr.matchers.methods.Method` objects). Progress (one unit per pair and
    method) goes to the log (:mod:`sopcorr.progress`); ``progress`` also shows a console bar."""
    from ..progress import progress as reporter

    pairs = figure_pairs(cat, n_pairs)
    rows = []
    bar = reporter(total=len(pairs) * len(methods), desc=f"figures {cat.category}", unit="match",
                   disable=not progress, logger=log)
    with bar:
        for a, b in pairs:
            corr = {}
            for m in methods:
                corr[m.name] = m.correspondence(b, a)
                bar.update(1)
            rows.append(dict(img_a=cat.image(a), img_b=cat.image(b), box_a=cat.bbox(a), box_b=cat.bbox(b),
                             label_a=cat.instances[a].id, label_b=cat.instances[b].id, corr=corr))
    draw_correspondence_grid(rows, [m.name for m in methods], out,
                             title=f"{cat.category}: B coloured by its match in A")
