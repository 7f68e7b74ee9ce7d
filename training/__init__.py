"""Fine-tuning timm models on log-mel spectrograms of BirdCLEF-layout data.

Importing this package imports torch; the service (``app``) never imports it.
"""

from .augment import Augmenter
from .checkpoint import load_checkpoint, save_checkpoint
from .config import AugmentConfig, TrainConfig
from .metrics import macro_roc_auc, padded_cmap, score_all
from .models import create_model, list_models, register_model
from .train import TrainResult, predict, train

__all__ = [
    "AugmentConfig",
    "Augmenter",
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
