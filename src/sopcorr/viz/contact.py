"""Contact sheet: a grid of a category's images with keypoints drawn and named."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.generic import read_image
from ..data.model import Dataset
from ..io import save_plot
from .axes import hide_axes


def contact_sheet(ds: Dataset, category: str, path: str | Path, max_images: int = 12, cols: int = 4,
                  show_parts: bool = False) -> None:
    """Save a grid of up to ``max_images`` instances of ``category`` (evenly spread over the
    instances sorted by id, so both splits show). Visible
    keypoints: filled dots in a colour per name, labelled with the name; not visible: hollow
    circles. With ``show_parts`` and part maps available, the part labels are overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    allc = sorted((i for i in ds.instances if i.category == category), key=lambda i: i.id)
    pick = np.unique(np.linspace(0, len(allc) - 1, min(max_images, len(allc))).round().astype(int)) if allc else []
    insts = [allc[k] for k in pick]
    names = ds.categories[category].keypoints
    cmap = plt.get_cmap("tab20")
    colour = {n: cmap(k % 20) for k, n in enumerate(names)}
    n = max(len(insts), 1)
    cols = min(cols, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows + 0.6), squeeze=False)
    for ax in axes.ravel():
        hide_axes(ax)
    for ax, inst in zip(axes.ravel(), insts):
        img = read_image(ds.path(inst.image))
        ax.imshow(img)
        if show_parts and inst.parts is not None:
            from ..data.groundtruth import read_parts

            lab = read_parts(ds.path(inst.parts)).astype(float)
            lab[lab == 0] = np.nan
            ax.imshow(lab, cmap="tab20", alpha=0.35, interpolation="nearest")
        if inst.bbox is not None:
            x0, y0, x1, y1 = inst.bbox
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white", lw=0.8, ls="--"))
        for name, (x, y, v) in inst.keypoints.items():
            c = colour.get(name, "white")
            if v:
                ax.plot(x, y, "o", ms=4, mfc=c, mec="black", mew=0.5)
                ax.text(x + 2, y - 2, name, fontsize=4.5, color="white",
                        bbox=dict(boxstyle="round,pad=0.1", fc=c, ec="none", alpha=0.75))
            else:
                ax.plot(x, y, "o", ms=4, mfc="none", mec=c, mew=0.8)
        ax.set_title(f"{inst.id} ({inst.split})", fontsize=7)
    fig.suptitle(f"{category}: {sum(1 for i in ds.instances if i.category == category)} instances, "
                 f"{len(names)} keypoints (filled: visible, hollow: not visible)", fontsize=9)
    fig.tight_layout()
    save_plot(fig, path, 110, compress_level=3)
