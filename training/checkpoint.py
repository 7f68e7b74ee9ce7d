"""The training checkpoint: one ``torch.save`` dict that ``torch.load(weights_only=True)`` reads back.

Keys (format 1)::

    format: 1               arch, model_kwargs (create_model kwargs), state_dict (model tensors)
    labels: [{code, common_name, scientific_name}]                 frontend: FrontendConfig.model_dump()
    metrics: {name: float}  per_species_ap: {code: float}           data: DataSummary.model_dump()
    train_config: TrainConfig.model_dump(mode="json")               epoch: last finished epoch (1-based)
    optimizer, scheduler, scaler: state dicts                       rng: generator states (resume)
    history: [per-epoch metric rows]  best_metric: float            bad_epochs: int (early stopping)
    validation: {selected_by, monitor, sets: {set: how it was made}}  (the card's ``validation``)

Only plain Python containers, numbers, strings and tensors are stored, so loading never runs pickled
code. ``best.pt`` and ``last.pt`` in the run directory share the format.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["CHECKPOINT_FORMAT", "REQUIRED_KEYS", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = 1
REQUIRED_KEYS = ("format", "arch", "model_kwargs", "state_dict", "labels", "frontend", "metrics",
                 "per_species_ap", "data", "train_config", "epoch")


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a checkpoint atomically (a reader never sees half a file).

    Args:
        checkpoint (dict): the format-1 dict (see the module docstring).
        path (path): destination, e.g. ``run_dir/last.pt``.
    """
    missing = [k for k in REQUIRED_KEYS if k not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint lacks keys {missing}")
    import torch

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a training checkpoint with ``torch.load(weights_only=True)``.

    Args:
        path (path): ``best.pt`` or ``last.pt`` of a run.
        map_location: device for the tensors. (Default: ``"cpu"``)

    Returns:
        dict: the format-1 checkpoint.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a training checkpoint, or an unknown format.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ValueError(f"{path}: not a readable checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a format-{CHECKPOINT_FORMAT} training checkpoint (format={found!r})")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks keys {missing}")
    return ckpt
