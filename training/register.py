"""Checkpoint -> checked ONNX (optionally int8) -> model card -> model store.

:func:`publish` is the one path from a training checkpoint into the store, used by ``soundscape export``,
``soundscape retrain`` and ``soundscape build-default-model``:

1. rebuild the model from the checkpoint and export it (:func:`training.export.export_onnx`), checked
   against PyTorch on real audio windows (the validation soundscapes, else the given/training audio);
2. score the fp32 ONNX file through the serving path on the labelled soundscapes, when there are any;
3. optionally quantize to int8 (:func:`training.quantize.quantize_and_check`) and keep int8 only when
   the metric holds;
4. register the chosen file with a full :class:`~model_store.ModelCard` (``metrics.csv`` and
   ``curves.png`` of the run as extra files), promoted or not.

Nothing is registered when any step fails.

Given several checkpoints, :func:`publish` registers an ensemble through the same steps: the members must
share labels and front end; they are exported as one graph (:func:`training.export.export_onnx`, mean of the
members' probabilities, concatenated embeddings), the card's architecture is ``ensemble[arch1,arch2,...]``
and ``card.training["ensemble"]`` lists the member checkpoints. Validation windows and parity audio come
from the first member's training data. int8 is refused for ensembles: the quantizer keeps one stem and one
classifier in fp32 (not one per member) and would put the members' combination on a uint8 scale.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from model_store import DEFAULT_MODEL_NAME, ModelCard, ModelStore, TensorSpec, ValidationInfo
from model_store.card import Postprocess
from soundscape.allocator import release_free_memory
from soundscape.audio import Frontend, FrontendConfig

from .checkpoint import Checkpoint, SelectionInfo
from .config import training_audio
from .evaluate import Evaluation, ValidationData, evaluate_model, load_validation, unregistered_model
from .export import (
    ENSEMBLE_COMBINE,
    ExportConfig,
    ExportResult,
    check_ensemble_members,
    ensemble_architecture,
    export_onnx,
    model_from_checkpoint,
    real_images,
)
from .quantize import QuantizeConfig, QuantizeReport, quantize_and_check

__all__ = ["PublishConfig", "PublishResult", "build_card", "publish", "spread_images", "spread_indices"]

log = logging.getLogger(__name__)

RUN_FILES = ("metrics.csv", "curves.png")


@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish` registered.

    Attributes:
        card (ModelCard): the registered card (version and sha256 filled in).
        export (ExportResult): exporter and parity numbers.
        quantization (QuantizeReport | None): int8 report, when asked for.
        evaluation (Evaluation | None): serving-path scores of the registered file on the soundscapes.
        validation (ValidationData | None): the labelled windows used (reused by retrain for the champion).
    """

    card: ModelCard
    export: ExportResult
    quantization: QuantizeReport | None
    evaluation: Evaluation | None
    validation: ValidationData | None


def _checkpoint_metrics(ckpt: Checkpoint) -> dict[str, float]:
    return {k: float(v) for k, v in ckpt.metrics.items() if isinstance(v, int | float) and np.isfinite(v)}


def build_card(ckpt: Checkpoint | Mapping[str, Any] | Sequence[Checkpoint | Mapping[str, Any]], exported: ExportResult,
               *, name: str,
               precision: str = "fp32", metrics: dict[str, float] | None = None,
               per_species_ap: dict[str, float] | None = None, parent_version: int | None = None,
               extra_training: dict[str, Any] | None = None, notes: str = "",
               member_paths: Sequence[str | os.PathLike] | None = None) -> ModelCard:
    """The model card of an exported checkpoint or ensemble (version and sha256 are filled in by the store).

    An ensemble's card takes labels, front end, data summary and validation info from its first member;
    its metrics are empty until scored (members' checkpoint metrics are not the ensemble's); its
    architecture is ``ensemble[...]`` and ``training["ensemble"]`` describes every member.

    Args:
        ckpt (Checkpoint | Sequence[Checkpoint]): the training checkpoint, or the members of an ensemble (raw
            dicts of :func:`training.checkpoint.load_checkpoint` are accepted too).
        exported (ExportResult): from :func:`training.export.export_onnx`.
        name (str): model name in the store.
        precision (str): ``fp32`` or ``int8``. (Default: ``"fp32"``)
        metrics (dict, optional): validation metrics of the ONNX file. (Default: the checkpoint's)
        per_species_ap (dict, optional): AP per species. (Default: the checkpoint's)
        parent_version (int, optional): the version this model replaces or was fine-tuned from.
        extra_training (dict, optional): more entries for ``card.training`` (export, quantization...).
        notes (str): free text.
        member_paths (Sequence[path], optional): the members' checkpoint files, recorded in the card.

    Raises:
        ValueError: the export does not match the labels, or ensemble members differ in labels or front end.
    """
    members = [Checkpoint.of(c) for c in ([ckpt] if isinstance(ckpt, Checkpoint | Mapping) else ckpt)]
    paths = [str(p) for p in member_paths] if member_paths is not None else [""] * len(members)
    if len(members) > 1:
        check_ensemble_members(members, paths if member_paths is not None else None)
    ckpt = members[0]
    frontend, labels = ckpt.frontend, list(ckpt.labels)
    if exported.n_labels != len(labels):
        raise ValueError(f"the exported model has {exported.n_labels} outputs but the checkpoint "
                         f"lists {len(labels)} labels")
    if len(members) == 1:
        architecture = ckpt.arch
        ckpt_metrics = _checkpoint_metrics(ckpt)
        ckpt_ap = {k: float(v) for k, v in ckpt.per_species_ap.items() if np.isfinite(v)}
        training: dict[str, Any] = {
            "train_config": ckpt.train_config,
            "epoch": ckpt.epoch,
            "checkpoint_metrics": ckpt_metrics,
        }
    else:
        architecture = ensemble_architecture([m.arch for m in members])
        ckpt_metrics, ckpt_ap = {}, {}
        dims = list(exported.member_embedding_dims) or [None] * len(members)
        training = {"ensemble": {
            "combine": ENSEMBLE_COMBINE,
            "members": [{"checkpoint": path, "arch": m.arch, "epoch": m.epoch,
                         "checkpoint_metrics": _checkpoint_metrics(m), "embedding_dim": dim,
                         "train_config": m.train_config}
                        for m, path, dim in zip(members, paths, dims, strict=True)],
        }}
    training.update(extra_training or {})
    info = ckpt.validation or SelectionInfo()
    validation = ValidationInfo(selected_by=info.selected_by, monitor=info.monitor,
                                metrics_from=info.selected_by,  # until publish scores the ONNX file
                                sets=dict(info.sets))
    return ModelCard(
        name=name,
        labels=labels,
        frontend=frontend,
        architecture=architecture,
        inputs=[TensorSpec(name="image", shape=[None, *frontend.image_shape])],
        outputs=[TensorSpec(name="logits", shape=[None, len(labels)]),
                 TensorSpec(name="embedding", shape=[None, exported.embedding_dim])],
        output_activation="sigmoid",
        precision=precision,
        data=ckpt.data,
        metrics=metrics if metrics is not None else ckpt_metrics,
        per_species_ap=per_species_ap if per_species_ap is not None else ckpt_ap,
        training=training,
        validation=validation,
        postprocess=Postprocess.model_validate(ckpt.train_config.get("postprocess") or {}),
        parent_version=parent_version,
        notes=notes,
    )


def spread_indices(m: int, n: int) -> np.ndarray:
    """Indices of ``n`` (at most ``m``) items spread evenly over ``m``."""
    return np.unique(np.linspace(0, m - 1, num=min(n, m)).round().astype(int))


def spread_images(frontend: FrontendConfig, windows: np.ndarray, n: int) -> np.ndarray:
    """Images of ``n`` windows spread evenly over ``windows`` ``(m, samples)`` -> ``(n, 1, n_mels, T)``."""
    return Frontend(frontend)(windows[spread_indices(len(windows), n)])[:, None]


def _selection_validation(ckpt: Checkpoint, codes: list[str],
                          cache_dir: str | os.PathLike | None) -> ValidationData | None:
    """The validation set that chose the checkpoint, rebuilt from its training config; None when its data
    is gone. Checkpoints from before pseudo-soundscapes (no ``validation`` entry) used labelled soundscapes."""
    from .validation import selection_validation

    tc = dict(ckpt.train_config)
    if ckpt.validation is None:
        if not (tc.get("soundscapes_labels") and tc.get("soundscapes_dir")):
            return None
        tc["validation"] = "soundscapes"
    try:
        return selection_validation(tc, codes, cache_dir=cache_dir)
    except (FileNotFoundError, ValueError) as exc:
        log.warning("cannot rebuild the checkpoint's validation set (%s): the card keeps its training metrics", exc)
        return None


class PublishConfig(BaseModel):
    """How :func:`publish` exports, checks and registers a checkpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(DEFAULT_MODEL_NAME, description="Model name in the store.")
    quantize: bool = Field(False, description="Try int8; kept only when the metric drops by at most "
                                              "quantization.tolerance.")
    promote: bool = Field(False, description="Mark the new version as production.")
    parent_version: int | None = Field(None, description="Recorded in the card: the version this one replaces.")
    soundscapes_labels: Path | None = Field(
        None, description="Labelled soundscapes to score on, with soundscapes_dir. (Default: the validation set "
                          "that selected the checkpoint, rebuilt from its training data when it still exists: "
                          "pseudo-soundscapes, held-out clips or labelled soundscapes)")
    soundscapes_dir: Path | None = Field(None, description="Folder of the labelled soundscapes.")
    audio: list[Path] | None = Field(None, description="Audio files or folders for the parity check when there "
                                                       "are no validation windows. (Default: the checkpoint's "
                                                       "audio_root)")
    cache_dir: Path | None = Field(None, description="Decoded-audio cache. (Default: a temporary folder)")
    export: ExportConfig = Field(default_factory=ExportConfig, description="Exporter and parity settings.")
    quantization: QuantizeConfig = Field(default_factory=QuantizeConfig, description="int8 settings (metric, "
                                                                                     "tolerance).")
    notes: str = Field("", description="Card notes.")

    @model_validator(mode="after")
    def _soundscapes_together(self) -> PublishConfig:
        if (self.soundscapes_labels is None) != (self.soundscapes_dir is None):
            raise ValueError("soundscapes_labels and soundscapes_dir must be given together")
        return self


def publish(checkpoint: str | os.PathLike | Sequence[str | os.PathLike], store: ModelStore,
            cfg: PublishConfig | None = None, *, validation: ValidationData | None = None) -> PublishResult:
    """Export a checkpoint (or an ensemble of checkpoints), check it, optionally quantize it, and register it.

    Args:
        checkpoint (path | Sequence[path]): ``best.pt`` of a run; a list of two or more is exported and
            registered as one ensemble model (see the module docstring), a list of one as that model.
        store (ModelStore): destination store.
        cfg (PublishConfig, optional): name, int8, promotion, labelled soundscapes, export settings, notes.
            (Default: ``PublishConfig()``)
        validation (ValidationData, optional): already loaded windows (overrides the soundscape paths).

    Returns:
        PublishResult: the registered card and the reports.

    Raises:
        ValueError: bad input (no real audio for the parity check, int8 asked without soundscapes or for an
            ensemble, ensemble members with other labels or front ends...).
        training.export.ExportError: export or parity failed; nothing was registered.
    """
    cfg = cfg or PublishConfig()
    release_free_memory()  # what training freed in this process, before export and scoring map their buffers
    paths = [Path(checkpoint)] if isinstance(checkpoint, str | os.PathLike) else [Path(c) for c in checkpoint]
    members = _load_members(paths, cfg)
    ckpt = members[0]  # labels, front end and training data of the (first) model
    with tempfile.TemporaryDirectory(prefix="soundscape-export-") as tmp:
        tmp = Path(tmp)
        validation = _validation(ckpt, cfg, validation, tmp)
        images = _parity_images(ckpt, paths[0], cfg, validation)
        if cfg.quantize and validation is None:
            raise ValueError("int8 quantization needs validation windows to check the metric (the training data "
                             "is gone); pass --soundscapes-labels and --soundscapes-dir, or drop --quantize")
        fp32_path = tmp / "model.fp32.onnx"
        models = [model_from_checkpoint(m) for m in members]
        exported = export_onnx(models[0] if len(models) == 1 else models, fp32_path, images, cfg.export)
        tolerances = {"prob_atol": cfg.export.prob_atol, "atol": cfg.export.atol, "rtol": cfg.export.rtol}
        extra: dict[str, Any] = {"export": {**exported.parity(), "opset": cfg.export.opset, "tolerances": tolerances}}
        if len(members) == 1:
            extra["checkpoint"] = str(paths[0])
        card = build_card(members, exported, name=cfg.name, parent_version=cfg.parent_version, extra_training=extra,
                          notes=cfg.notes, member_paths=paths)
        evaluation = None
        chosen, report = fp32_path, None
        if validation is not None:
            evaluation = evaluate_model(unregistered_model(card, fp32_path), validation, desc="scoring fp32")
        if cfg.quantize:
            report, int8_eval = _try_int8(card, fp32_path, tmp / "model.int8.onnx", validation, evaluation,
                                          cfg.quantization)
            extra["quantization"] = report.to_dict()
            if report.accepted:
                chosen, evaluation = tmp / "model.int8.onnx", int8_eval
        card = _scored_card(card, extra, int8=chosen != fp32_path, evaluation=evaluation, validation=validation)
        registered = store.register(card, chosen, promote=cfg.promote, extra_files=_run_files(paths))
    log.info("registered %s v%d (%s, %.1f MB)%s", registered.name, registered.version, registered.precision,
             store.version_dir(cfg.name, registered.version).joinpath("model.onnx").stat().st_size / 1e6,
             " and promoted it" if cfg.promote else "")
    return PublishResult(card=registered, export=exported, quantization=report, evaluation=evaluation,
                         validation=validation)


def _load_members(paths: list[Path], cfg: PublishConfig) -> list[Checkpoint]:
    """The checkpoints to publish, refused when they cannot make one model (none, int8 ensemble, mismatch)."""
    if not paths:
        raise ValueError("no checkpoint to publish")
    if len(paths) > 1 and cfg.quantize:
        raise ValueError("int8 quantization of an ensemble is not supported (the quantizer would keep only one "
                         "member's stem and classifier in fp32 and put the members' combination on a uint8 "
                         "scale); publish the ensemble in fp32, or quantize single models")
    members = [Checkpoint.load(p) for p in paths]
    if len(members) > 1:
        check_ensemble_members(members, [str(p) for p in paths])
    return members


def _validation(ckpt: Checkpoint, cfg: PublishConfig, validation: ValidationData | None,
                tmp: Path) -> ValidationData | None:
    """The labelled windows to score on: given, the configured soundscapes, else the checkpoint's own set."""
    if validation is None and cfg.soundscapes_labels is not None:
        validation = load_validation(cfg.soundscapes_labels, cfg.soundscapes_dir, ckpt.codes, ckpt.frontend,
                                     cache_dir=cfg.cache_dir or tmp / "cache")
    elif validation is None:
        validation = _selection_validation(ckpt, ckpt.codes, cfg.cache_dir)
    if validation is not None and (list(validation.codes) != ckpt.codes or validation.frontend != ckpt.frontend):
        raise ValueError("the validation windows were loaded for other labels or another front end")
    return validation


def _parity_images(ckpt: Checkpoint, path: Path, cfg: PublishConfig,
                   validation: ValidationData | None) -> np.ndarray:
    """Real images for the export's parity check: validation windows, else the given or training audio."""
    if validation is not None:
        return spread_images(ckpt.frontend, validation.windows, cfg.export.parity_windows)
    sources = list(cfg.audio or [])
    root = training_audio(ckpt.train_config)
    if not sources and root and Path(root).is_dir():
        sources = [root]
    if not sources:
        raise ValueError(f"{path}: no real audio for the parity check (the training data is gone); "
                         "pass audio files or folders (--audio) or labelled soundscapes")
    return real_images(ckpt.frontend, sources, cfg.export.parity_windows)


def _try_int8(card: ModelCard, fp32_path: Path, int8_path: Path, validation: ValidationData,
              fp32_eval: Evaluation, cfg: QuantizeConfig) -> tuple[QuantizeReport, Evaluation | None]:
    """Quantize to ``int8_path`` and score it like the fp32 file; the report and the int8 scores."""
    int8_card = card.model_copy(update={"precision": "int8"})
    int8_eval: list[Evaluation] = []

    def score(path: Path) -> dict[str, float]:
        int8_eval.append(evaluate_model(unregistered_model(int8_card, path), validation, desc="scoring int8"))
        return int8_eval[-1].metrics

    calibration = spread_images(card.frontend, validation.windows, cfg.calibration_windows)
    report = quantize_and_check(fp32_path, int8_path, calibration=calibration, score=score, cfg=cfg,
                                fp32_metrics=fp32_eval.metrics)
    return report, int8_eval[-1] if int8_eval else None


def _scored_card(card: ModelCard, extra: dict[str, Any], *, int8: bool, evaluation: Evaluation | None,
                 validation: ValidationData | None) -> ModelCard:
    """The card to register: export/int8 reports, precision, and the serving-path scores when there are any."""
    update: dict[str, Any] = {"training": {**card.training, **extra}}
    if int8:
        update["precision"] = "int8"
    if evaluation is not None:
        update["metrics"] = evaluation.metrics
        update["per_species_ap"] = evaluation.per_species_ap
        update["validation"] = card.validation.model_copy(update={"metrics_from": validation.kind})
        if validation.kind == "soundscapes":
            update["data"] = card.data.model_copy(update={"val_soundscapes": validation.n_soundscapes})
    return card.model_copy(update=update)


def _run_files(paths: list[Path]) -> dict[str, Path]:
    """The runs' metrics.csv / curves.png; an ensemble keeps each member's as ``member<i>-<file>``."""
    prefixes = [""] if len(paths) == 1 else [f"member{i}-" for i in range(len(paths))]
    return {prefix + f: path.parent / f for prefix, path in zip(prefixes, paths, strict=True)
            for f in RUN_FILES if (path.parent / f).is_file()}
