"""Model cards and the versioned model store: the contract between training and serving.

The repository ships a read-only default store (``model_store/default``) holding the bundled demo model;
:func:`default_store_path` finds it whether the package runs from a checkout or an install. Where models are
written (the user store) and read from: :mod:`model_store.locations`.
"""

from .card import (
    CARD_FILE,
    HEAD_FILE,
    MODEL_FILE,
    MODEL_FILES,
    BackboneRef,
    DataSummary,
    HeadSpec,
    Label,
    ModelCard,
    ModelSource,
    TensorSpec,
    ValidationInfo,
    sha256_file,
)
from .locations import STORE_ENV, add_write_store_argument, bundled_store_path, serving_store_path, user_store_path
from .store import POINTER_FILE, ModelStore, StoreError, StoreErrorCode, VerifiedModel, load_folder, verified_files

__all__ = [
    "CARD_FILE",
    "DEFAULT_MODEL_NAME",
    "HEAD_FILE",
    "MODEL_FILE",
    "MODEL_FILES",
    "POINTER_FILE",
    "STORE_ENV",
    "BackboneRef",
    "DataSummary",
    "HeadSpec",
    "Label",
    "ModelCard",
    "ModelSource",
    "ModelStore",
    "StoreError",
    "StoreErrorCode",
    "TensorSpec",
    "ValidationInfo",
    "VerifiedModel",
    "add_write_store_argument",
    "bundled_store_path",
    "default_store_path",
    "load_folder",
    "serving_store_path",
    "sha256_file",
    "user_store_path",
    "verified_files",
]

DEFAULT_MODEL_NAME = "birds"


default_store_path = bundled_store_path  # the bundled store's older name
