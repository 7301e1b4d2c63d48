"""The training loss curve of the Siamese stages."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import save_figure


def plot_loss(history: list[float], path: str | Path, title: str = "Siamese training loss",
              ylabel: str = "loss") -> None:
    """Loss curve (per step and a moving average) saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    h = np.asarray(history, dtype=float)
    ax.plot(np.arange(1, len(h) + 1), h, lw=0.8, alpha=0.5, label="per step")
    if len(h) >= 5:
        w = max(2, len(h) // 20)
        ma = np.convolve(h, np.ones(w) / w, mode="valid")
        ax.plot(np.arange(w, len(h) + 1), ma, lw=1.8, label=f"mean of {w}")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
