"""``train(cfg)``: one training run, from BirdCLEF-layout data to checkpoints and curves.

This module imports no torch; the loop itself is :mod:`training.loop`, loaded when ``train`` is called,
so ``import training`` and ``soundscape train --help`` stay instant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .result import TrainResult

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = ["TrainResult", "train"]


def train(cfg: TrainConfig, *, on_epoch_end: Callable[[dict], None] | None = None) -> TrainResult:
    """Fine-tune ``cfg.arch`` on the clips of ``cfg.metadata`` (with ``cfg.backbone``: train a head on that
    model's frozen embeddings of them instead, :func:`training.embedding_head.train_head`).

    With ``cfg.unlabelled_dir`` and ``cfg.self_training.rounds > 0`` it self-trains: round 0 on the clips,
    then student rounds on the clips plus the pseudo-labelled unlabelled windows, each kept only if it
    improves the validation (:mod:`training.self_training`; rounds in ``round<r>/``, the kept one's
    checkpoint copied to ``best.pt``). Otherwise it writes to ``cfg.out_dir``: ``last.pt`` every epoch,
    ``best.pt`` when the monitored validation metric improves (every epoch when there is no validation
    set), ``metrics.csv``, ``problems.csv`` and, at the end, ``curves.png``. With ``cfg.resume`` it
    continues from ``last.pt`` (model, optimiser, scheduler, random states, early-stopping counters),
    giving the same weights as an uninterrupted run. Under
    ``torchrun --nproc_per_node=N`` it trains with DistributedDataParallel; only rank 0 writes files.

    Args:
        cfg (TrainConfig): the run's settings.
        on_epoch_end (callable, optional): called with each epoch's metrics row after its checkpoint is
            written, on every rank (e.g. to report progress, or to stop by raising).

    Returns:
        TrainResult: paths of the checkpoints, the best metrics and the history.

    Raises:
        FileNotFoundError: a configured file or folder is missing.
        ValueError: unusable data or settings (the message names the file or value).
    """
    if cfg.backbone is not None:
        from .embedding_head import train_head

        return train_head(cfg, on_epoch_end=on_epoch_end)
    from .loop import run_training

    if cfg.self_trains:
        from .self_training import self_train

        return self_train(cfg, lambda round_cfg, pseudo_labels: run_training(
            round_cfg, on_epoch_end=on_epoch_end, pseudo_labels=pseudo_labels))
    return run_training(cfg, on_epoch_end=on_epoch_end)
