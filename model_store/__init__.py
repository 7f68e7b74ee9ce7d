"""Model cards and the versioned model store: the contract between training and serving.

The repository ships a default store (``model_store/default``) holding the bundled demo model;
:func:`default_store_path` finds it whether the package runs from a checkout or an install.
"""

from pathlib import Path

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
from .store import POINTER_FILE, ModelStore, StoreError, StoreErrorCode, VerifiedModel, load_folder, verified_files

__all__ = [
    "CARD_FILE",
    "DEFAULT_MODEL_NAME",
    "HEAD_FILE",
    "MODEL_FILE",
    "MODEL_FILES",
    "POINTER_FILE",
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
    "default_store_path",
    "load_folder",
    "sha256_file",
    "verified_files",
]

DEFAULT_MODEL_NAME = "birds"


def default_store_path() -> Path:
    """The bundled store shipped with the package (``model_store/default``)."""
    return Path(__file__).resolve().parent / "default"
