"""Grouped bar charts of a result table: one group per category (and the mean), one bar per
method."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def draw_table_bars(df: pd.DataFrame, out: str | Path, ylabel: str = "PCK (%)", title: str = "") -> None:
    """df: a wide table (method, *categories, mean); rows named 'paper: ...' are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import save_figure

    df = df[~df["method"].astype(str).str.startswith("paper:")]
    cols = [c for c in df.columns if c != "method"]
    methods = df["method"].astype(str).tolist()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(cols) * max(1, len(methods)) * 0.25 + 2), 3.4))
    if methods and cols:
        width = 0.8 / len(methods)
        x = np.arange(len(cols))
        cmap = plt.get_cmap("tab20")
        for j, m in enumerate(methods):
            vals = pd.to_numeric(df.iloc[j][cols], errors="coerce").to_numpy(float)
            ax.bar(x - 0.4 + width * (j + 0.5), np.nan_to_num(vals), width, label=m,
                   color=cmap(j % 20), edgecolor="black" if m.startswith("ours") else "none", linewidth=0.6)
        ax.set_xticks(x)
        ax.set_xticklabels(cols, rotation=30, ha="right", fontsize=8)
        ax.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax.text(0.5, 0.5, "no results", ha="center", transform=ax.transAxes)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, out, dpi=110)
