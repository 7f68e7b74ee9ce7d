"""What a training run produced (:class:`TrainResult`), shared by :mod:`training.train`, :mod:`training.loop`
and :mod:`training.self_training` without an import cycle between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TrainResult"]


@dataclass(frozen=True)
class TrainResult:
    """What a run produced.

    Attributes:
        run_dir (Path): the run directory (``cfg.out_dir``).
        best_checkpoint (Path): checkpoint of the best validation epoch (the last one without validation).
        last_checkpoint (Path): checkpoint of the last epoch.
        metrics (dict[str, float]): validation metrics of the best epoch (``macro_roc_auc``,
            ``padded_cmap``, ``val_loss``) and its ``train_loss``.
        history (list[dict]): one row of metrics per epoch (the rows of ``metrics.csv``).
    """

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    metrics: dict[str, float]
    history: list[dict] = field(default_factory=list)
