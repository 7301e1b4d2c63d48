"""The figure of ``sopcorr match``: the paper's Figure 1 layout for one pair.

Top row: image A and image B as given, each named. Bottom row: A's object (its box, or the
whole image when no box is known) coloured by position (:func:`sopcorr.viz.colour.position_colours`),
and B with every pixel painted the colour of its match in A (correspondence B -> A); pixels whose
match is undefined or falls outside A's coloured region stay uncoloured. Optional lines join
the most confident matches A -> B (spread over A: no two within ``min_gap`` cells). A legend
column shows the colour map and says what is coloured. Large images are drawn at most
``max_side`` px on their long side (the colours are computed at that resolution).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .colour import colour_by_match, overlay, position_colours
from .colour import in_box as _in_box

__all__ = ["match_figure", "confident_matches", "colour_by_match"]


def _display_coords(h: int, w: int, scale: float) -> tuple[np.ndarray, tuple[int, int]]:
    """(h', w', 2) original-image coordinates of the pixels of the image drawn at ``scale``."""
    hd, wd = max(1, round(h * scale)), max(1, round(w * scale))
    ys, xs = np.mgrid[0:hd, 0:wd]
    xy = np.stack([xs, ys], -1).astype(np.float64)
    return (xy + 0.5) / np.array([wd / w, hd / h]) - 0.5, (hd, wd)


def _resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    import cv2

    if img.shape[:2] == tuple(hw):
        return img
    return cv2.resize(np.ascontiguousarray(img), (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


def confident_matches(corr_ab, n: int, box_a=None, min_gap: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` most confident matches of ``corr_ab`` (A -> B): source cell centres inside
    ``box_a`` with a valid match, taken by decreasing score, skipping a cell within ``min_gap``
    cells (Chebyshev) of one already taken. Returns (source xy (k, 2), target xy (k, 2)) in
    image pixels, k <= n."""
    if n <= 0:
        return np.zeros((0, 2)), np.zeros((0, 2))
    src = corr_ab.grid.cell_centers_image()
    ok = np.asarray(corr_ab.valid, bool) & np.isfinite(corr_ab.score) & np.isfinite(corr_ab.target_xy).all(-1)
    if box_a is not None:
        ok &= _in_box(src, box_a)
    rows, cols = np.nonzero(ok)
    order = np.argsort(-np.asarray(corr_ab.score)[rows, cols], kind="stable")
    taken: list[tuple[int, int]] = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if all(max(abs(r - r2), abs(c - c2)) > min_gap for r2, c2 in taken):
            taken.append((r, c))
            if len(taken) == n:
                break
    if not taken:
        return np.zeros((0, 2)), np.zeros((0, 2))
    rr, cc = np.array(taken).T
    return src[rr, cc].astype(np.float64), np.asarray(corr_ab.target_xy)[rr, cc].astype(np.float64)


def _legend(ax_swatch, ax_text, box_known: bool, n_lines: int, box_b_known: bool) -> None:
    """The colour map over a unit square (what the positions' colours are) and what is coloured."""
    n = 64
    u = (np.arange(n) + 0.5) / n
    rgb, _ = position_colours(np.stack(np.meshgrid(u, u), -1), (0.0, 0.0, 1.0, 1.0))
    ax_swatch.imshow(rgb, extent=(0, 1, 1, 0), interpolation="bilinear")
    ax_swatch.set_xticks([])
    ax_swatch.set_yticks([])
    where = "A's object box" if box_known else "image A"
    ax_swatch.set_title(f"colour = position in {where}", fontsize=7)
    ax_swatch.set_xlabel("left → right", fontsize=6.5)
    ax_swatch.set_ylabel("top → bottom", fontsize=6.5)
    lines = ["Coloured in A: " + ("its object box." if box_known
                                  else "the whole image\n(no box or mask known; --box-a\ncolours the object only)."),
             "B: each pixel takes the colour of\nits match in A" + (" (inside B's box)." if box_b_known else "."),
             "Uncoloured in B: no valid match,\nor its match lies outside the\ncoloured region."]
    if n_lines:
        lines.append(f"Lines: the {n_lines} most confident\nmatches A → B.")
    ax_text.axis("off")
    ax_text.text(0.0, 1.0, "\n\n".join(lines), ha="left", va="top", fontsize=6.5, linespacing=1.3,
                 transform=ax_text.transAxes)


def match_figure(img_a: np.ndarray, img_b: np.ndarray, corr_ba, out: str | Path, *, corr_ab=None,
                 names: tuple[str, str] = ("A", "B"), box_a=None, box_b=None, lines: int = 0,
                 title: str = "", max_side: int = 640, dpi: int = 110) -> None:
    """Write the figure (see the module docstring) to ``out`` (format from the suffix).

    img_a, img_b: uint8 (h, w, 3); corr_ba: DenseCorrespondence B -> A (colours B); corr_ab:
    A -> B (needed for ``lines`` > 0); box_a / box_b: (x0, y0, x1, y1) object boxes in image
    pixels or None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import save_plot

    ha, wa = img_a.shape[:2]
    hb, wb = img_b.shape[:2]
    sa = min(1.0, max_side / max(ha, wa))
    sb = min(1.0, max_side / max(hb, wb))
    xy_a, (hda, wda) = _display_coords(ha, wa, sa)
    xy_b, (hdb, wdb) = _display_coords(hb, wb, sb)
    region_a = box_a if box_a is not None else (-0.5, -0.5, wa - 0.5, ha - 0.5)
    col_a, in_a = position_colours(xy_a, region_a)
    col_b, in_b = colour_by_match(corr_ba, xy_b, region_a, box_b)
    da, db = _resize(img_a, (hda, wda)), _resize(img_b, (hdb, wdb))
    gap = max(8, round(0.03 * (wda + wdb)))
    H, W = max(hda, hdb), wda + gap + wdb
    top = np.ones((H, W, 3))
    bottom = np.ones((H, W, 3))
    top[:hda, :wda] = da / 255.0
    top[:hdb, wda + gap:] = db / 255.0
    bottom[:hda, :wda] = overlay(da, col_a, in_a)
    bottom[:hdb, wda + gap:] = overlay(db, col_b, in_b)

    legend_w = 2.3
    img_w = min(11.0, max(4.0, W / 100))  # about one figure pixel per image pixel at dpi 110
    img_h = img_w * H / W
    fig_h = 2 * img_h + 0.75
    fig = plt.figure(figsize=(img_w + legend_w, fig_h))
    # fixed margins (no bbox_inches="tight": it draws the figure twice)
    gs = fig.add_gridspec(2, 2, width_ratios=[img_w, legend_w], wspace=0.1, hspace=0.12,
                          left=0.01, right=0.99, bottom=0.02, top=1 - (0.5 if title else 0.3) / fig_h)
    ax_top, ax_bot = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[1, 0])
    for ax, canvas in ((ax_top, top), (ax_bot, bottom)):
        ax.imshow(canvas, interpolation="nearest")
        ax.set_xlim(-0.5, W - 0.5)
        ax.set_ylim(H - 0.5, -0.5)
        ax.axis("off")
    for x_mid, label in ((wda / 2, f"A: {names[0]}"), (wda + gap + wdb / 2, f"B: {names[1]}")):
        ax_top.text(x_mid, -0.02 * H, label, ha="center", va="bottom", fontsize=8)
    if box_b is not None:
        x0, y0, x1, y1 = box_b
        ax_top.add_patch(plt.Rectangle(((x0 + 0.5) * sb - 0.5 + wda + gap, (y0 + 0.5) * sb - 0.5),
                                       (x1 - x0) * sb, (y1 - y0) * sb, fill=False, ec="white", lw=0.8, ls="--"))
    if box_a is not None:
        x0, y0, x1, y1 = box_a
        ax_top.add_patch(plt.Rectangle(((x0 + 0.5) * sa - 0.5, (y0 + 0.5) * sa - 0.5),
                                       (x1 - x0) * sa, (y1 - y0) * sa, fill=False, ec="white", lw=0.8, ls="--"))
    n_drawn = 0
    if lines > 0 and corr_ab is not None:
        src, tgt = confident_matches(corr_ab, lines, box_a)
        rgb, _ = position_colours(src, region_a)
        s = (src + 0.5) * sa - 0.5
        t = (tgt + 0.5) * sb - 0.5 + np.array([wda + gap, 0.0])
        for (x0, y0), (x1, y1), c in zip(s, t, rgb):
            ax_bot.plot([x0, x1], [y0, y1], "-", color=c, lw=0.9, alpha=0.95)
            ax_bot.plot([x0, x1], [y0, y1], "o", color=c, mec="black", mew=0.3, ms=3)
        n_drawn = len(s)
    leg = gs[:, 1].subgridspec(2, 1, height_ratios=[1, 1.9], hspace=0.3)
    ax_sw = fig.add_subplot(leg[0])
    ax_sw.set_box_aspect(1)
    _legend(ax_sw, fig.add_subplot(leg[1]), box_a is not None, n_drawn, box_b is not None)
    if title:
        fig.suptitle(title, fontsize=8.5, y=1 - 0.12 / fig_h, va="top")
    save_plot(fig, out, dpi)  # a PNG or JPEG as RGB, fast PNG compression
