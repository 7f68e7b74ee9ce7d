"""Fine-tuning timm models on log-mel spectrograms of labelled clips (BirdCLEF layout, species folders or Raven
selection tables: :mod:`training.inputs`).

Settings, metrics, checkpoint I/O and ``train`` import no torch at import time, so ``import training``
and ``soundscape train --help`` are instant; the names that need torch (``create_model``, ``Augmenter``,
``predict``, ...) are loaded on first use. The service (``app``) never imports this package.
"""

from __future__ import annotations

from soundscape.lazy import lazy_exports

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import AugmentConfig, TrainConfig
from .metrics import macro_roc_auc, padded_cmap, score_all
from .train import TrainResult, train

# torch-dependent public name -> defining module, imported on first access (PEP 562)
_LAZY = {
    "Augmenter": "augment",
    "create_model": "models",
    "list_models": "models",
    "register_model": "models",
    "predict": "loop",
}

__all__ = [
    "AugmentConfig",
    "Augmenter",
    "Checkpoint",
    "TrainConfig",
    "TrainResult",
    "create_model",
    "list_models",
    "load_checkpoint",
    "macro_roc_auc",
    "padded_cmap",
    "predict",
    "register_model",
    "save_checkpoint",
    "score_all",
    "train",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
