"""The training checkpoint: :class:`Checkpoint`, stored as one ``torch.save`` dict that
``torch.load(weights_only=True)`` reads back.

On disk (format 1) each field of :class:`Checkpoint` is one key of the dict, plus ``format: 1``::

    format: 1               arch, model_kwargs (create_model kwargs), state_dict (model tensors)
    labels: [{code, common_name, scientific_name}]                 frontend: FrontendConfig.model_dump()
    metrics: {name: float}  per_species_ap: {code: float}           data: DataSummary.model_dump()
    train_config: TrainConfig.model_dump(mode="json")               epoch: last finished epoch (1-based)
    optimizer, scheduler, scaler: state dicts                       rng: generator states (resume)
    history: [per-epoch metric rows]  best_metric: float            bad_epochs: int (early stopping)
    best_metrics: {name: float} (the best epoch's)
    validation: {selected_by, monitor, sets: {set: how it was made}}  (the card's ``validation``)

Only plain Python containers, numbers, strings and tensors are stored, so loading never runs pickled
code. ``best.pt`` and ``last.pt`` in the run directory share the format. :meth:`Checkpoint.load` and
:meth:`Checkpoint.save` are the typed way in and out; :func:`load_checkpoint` and :func:`save_checkpoint`
read and write the raw dict (the on-disk layer under them, kept for scripts that index the dict).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_store import DataSummary, Label
from soundscape.audio import FrontendConfig

if TYPE_CHECKING:
    import torch

__all__ = ["CHECKPOINT_FORMAT", "REQUIRED_KEYS", "Checkpoint", "SelectionInfo", "load_checkpoint",
           "save_checkpoint"]

CHECKPOINT_FORMAT = 1
REQUIRED_KEYS = ("format", "arch", "model_kwargs", "state_dict", "labels", "frontend", "metrics",
                 "per_species_ap", "data", "train_config", "epoch")
_RESUME_STATE = ("optimizer", "scheduler", "scaler", "rng")  # stored only when set


@dataclass(frozen=True)
class SelectionInfo:
    """Which validation chose the checkpoint (the card's ``validation``, less ``metrics_from``).

    Attributes:
        selected_by (str): the validation set that drove selection and early stopping (``none`` without one).
        monitor (str): the selection metric.
        sets (dict[str, str]): every validation set and how it was made.
    """

    selected_by: str = ""
    monitor: str = ""
    sets: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)  # tensors have no single truth value
class Checkpoint:
    """One epoch of a training run: the model, what it was trained on, and the state to resume from.

    Attributes:
        arch (str): timm architecture.
        model_kwargs (dict): :func:`training.models.create_model` keyword arguments.
        state_dict (dict[str, Tensor]): the model's weights.
        labels (list[Label]): output classes, in output order.
        frontend (FrontendConfig): the log-mel front end it was trained with.
        epoch (int): last finished epoch (1-based).
        metrics (dict[str, float]): this epoch's validation metrics and ``train_loss``.
        per_species_ap (dict[str, float]): AP per species on the selecting validation set.
        data (DataSummary): what it was trained on.
        train_config (dict): ``TrainConfig.model_dump(mode="json")`` of the run.
        validation (SelectionInfo | None): how the run validated; None in checkpoints from before the
            validation sets (those used labelled soundscapes).
        optimizer, scheduler, scaler (dict | None): state dicts, for resuming.
        rng (dict | None): ``{"ranks": [{"augment": ..., "torch": ...}]}``, each process's random states.
        history (list[dict]): one metrics row per epoch so far.
        best_metric (float): the best monitored value so far (``-inf`` before any).
        bad_epochs (int): epochs since it last improved (early stopping).
        best_metrics (dict[str, float]): the metrics of the best epoch so far.
    """

    arch: str
    model_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    labels: list[Label]
    frontend: FrontendConfig
    epoch: int
    metrics: dict[str, float] = field(default_factory=dict)
    per_species_ap: dict[str, float] = field(default_factory=dict)
    data: DataSummary = field(default_factory=DataSummary)
    train_config: dict[str, Any] = field(default_factory=dict)
    validation: SelectionInfo | None = None
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float = -math.inf
    bad_epochs: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def codes(self) -> list[str]:
        """The label codes, in output order."""
        return [label.code for label in self.labels]

    def to_dict(self) -> dict[str, Any]:
        """The format-1 dict written to disk (plain containers and tensors only)."""
        raw: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT, "arch": self.arch, "model_kwargs": self.model_kwargs,
            "state_dict": self.state_dict, "labels": [label.model_dump() for label in self.labels],
            "frontend": self.frontend.model_dump(), "metrics": self.metrics, "per_species_ap": self.per_species_ap,
            "data": self.data.model_dump(), "train_config": self.train_config, "epoch": self.epoch,
            "history": self.history, "best_metric": self.best_metric, "bad_epochs": self.bad_epochs,
            "best_metrics": self.best_metrics,
        }
        if self.validation is not None:
            raw["validation"] = dataclasses.asdict(self.validation)
        raw.update({key: getattr(self, key) for key in _RESUME_STATE if getattr(self, key) is not None})
        return raw

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Checkpoint:
        """The checkpoint of a format-1 dict (see the module docstring).

        Raises:
            ValueError: another format, a missing key or a malformed entry.
        """
        if raw.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not a format-{CHECKPOINT_FORMAT} training checkpoint (format={raw.get('format')!r})")
        missing = [k for k in REQUIRED_KEYS if k not in raw]
        if missing:
            raise ValueError(f"checkpoint lacks keys {missing}")
        info = raw.get("validation")
        return cls(
            arch=str(raw["arch"]), model_kwargs=dict(raw["model_kwargs"] or {}), state_dict=raw["state_dict"],
            labels=[Label.model_validate(label) for label in raw["labels"]],
            frontend=FrontendConfig.model_validate(raw["frontend"]), epoch=int(raw["epoch"]),
            metrics=dict(raw["metrics"] or {}), per_species_ap=dict(raw["per_species_ap"] or {}),
            data=DataSummary.model_validate(raw["data"] or {}), train_config=dict(raw["train_config"] or {}),
            validation=None if info is None else SelectionInfo(
                selected_by=str(info.get("selected_by", "")), monitor=str(info.get("monitor", "")),
                sets={str(k): str(v) for k, v in (info.get("sets") or {}).items()}),
            **{key: raw.get(key) for key in _RESUME_STATE},
            history=list(raw.get("history") or []), best_metric=float(raw.get("best_metric", -math.inf)),
            bad_epochs=int(raw.get("bad_epochs", 0)), best_metrics=dict(raw.get("best_metrics") or {}),
        )

    @classmethod
    def of(cls, checkpoint: Checkpoint | Mapping[str, Any]) -> Checkpoint:
        """``checkpoint`` itself, or the checkpoint of a raw dict from :func:`load_checkpoint`."""
        return checkpoint if isinstance(checkpoint, Checkpoint) else cls.from_dict(checkpoint)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: Any = "cpu") -> Checkpoint:
        """Read a checkpoint file (``best.pt`` or ``last.pt`` of a run).

        Args:
            path (path): the file.
            map_location: device for the tensors. (Default: ``"cpu"``)

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a training checkpoint, or an unknown format (the message names the file).
        """
        raw = load_checkpoint(path, map_location)
        try:
            return cls.from_dict(raw)
        except (ValueError, TypeError, AttributeError) as exc:  # pydantic's ValidationError is a ValueError
            raise ValueError(f"{path}: {exc}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the checkpoint atomically (a reader never sees half a file); returns ``path``."""
        return save_checkpoint(self.to_dict(), path)


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a raw checkpoint dict atomically (a reader never sees half a file). :meth:`Checkpoint.save`
    writes through it.

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
    """Read a training checkpoint as its raw dict with ``torch.load(weights_only=True)``
    (:meth:`Checkpoint.load` gives the typed checkpoint).

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
