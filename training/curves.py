"""Training curves and the per-epoch metrics table of a run."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["METRIC_COLUMNS", "SET_COLUMNS", "plot_curves", "write_metrics_csv"]

from .config import VALIDATION_SETS

# per epoch: the selecting set's val_loss / macro_roc_auc / padded_cmap, then every set's own two metrics
SET_COLUMNS = tuple(f"{kind}_{metric}" for kind in VALIDATION_SETS for metric in ("padded_cmap", "macro_roc_auc"))
METRIC_COLUMNS = ("epoch", "train_loss", "val_loss", "macro_roc_auc", "padded_cmap", *SET_COLUMNS, "lr",
                  "samples", "samples_per_s", "epoch_s")


def write_metrics_csv(history: Sequence[dict], path: str | os.PathLike) -> Path:
    """Write one row per epoch (atomically, so a resumed run rewrites the same file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)
    return path


def plot_curves(history: Sequence[dict], path: str | os.PathLike) -> Path:
    """Losses, validation metrics and learning rate per epoch, as a PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    panels = [("loss", ("train_loss", "val_loss")),
              ("padded cmAP per validation set", tuple(f"{kind}_padded_cmap" for kind in VALIDATION_SETS)),
              ("learning rate (end of epoch)", ("lr",))]
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for key in keys:
            values = [h.get(key, math.nan) for h in history]
            if any(v == v for v in values):  # skip all-NaN series
                ax.plot(epochs, values, marker="o", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
