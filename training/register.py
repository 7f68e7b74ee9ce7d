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

from model_store import DEFAULT_MODEL_NAME, ModelCard, ModelStore, TensorSpec, ValidationInfo
from model_store.card import Postprocess
from soundscape.audio import Frontend, FrontendConfig

from .checkpoint import Checkpoint, SelectionInfo
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

__all__ = ["PublishResult", "build_card", "publish", "spread_images"]

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


def spread_images(frontend: FrontendConfig, windows: np.ndarray, n: int) -> np.ndarray:
    """Images of ``n`` windows spread evenly over ``windows`` ``(m, samples)`` -> ``(n, 1, n_mels, T)``."""
    idx = np.unique(np.linspace(0, len(windows) - 1, num=min(n, len(windows))).round().astype(int))
    return Frontend(frontend)(windows[idx])[:, None]


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


def publish(checkpoint: str | os.PathLike | Sequence[str | os.PathLike], store: ModelStore, *,
            name: str = DEFAULT_MODEL_NAME, quantize: bool = False, promote: bool = False,
            parent_version: int | None = None,
            soundscapes_labels: str | os.PathLike | None = None, soundscapes_dir: str | os.PathLike | None = None,
            audio: Sequence[str | os.PathLike] | None = None, validation: ValidationData | None = None,
            cache_dir: str | os.PathLike | None = None, export_cfg: ExportConfig | None = None,
            quantize_cfg: QuantizeConfig | None = None, notes: str = "") -> PublishResult:
    """Export a checkpoint (or an ensemble of checkpoints), check it, optionally quantize it, and register it.

    Args:
        checkpoint (path | Sequence[path]): ``best.pt`` of a run (format 1); a list of two or more is exported
            and registered as one ensemble model (see the module docstring), a list of one as that model.
        store (ModelStore): destination store.
        name (str): model name. (Default: ``model_store.DEFAULT_MODEL_NAME``)
        quantize (bool): try int8; kept only when the metric drops by at most the tolerance.
        promote (bool): mark the new version as production.
        parent_version (int, optional): recorded in the card.
        soundscapes_labels, soundscapes_dir (path, optional): labelled soundscapes to score on. (Default:
            the validation set that selected the checkpoint, rebuilt from its training data when it still
            exists: pseudo-soundscapes, held-out clips or labelled soundscapes)
        audio (Sequence[path], optional): audio files or folders for the parity check when there are no
            soundscapes. (Default: the checkpoint's ``audio_root``)
        validation (ValidationData, optional): already loaded windows (overrides the soundscape paths).
        cache_dir (path, optional): decoded-audio cache. (Default: a temporary folder)
        export_cfg (ExportConfig, optional): exporter settings.
        quantize_cfg (QuantizeConfig, optional): int8 settings (metric, tolerance).
        notes (str): card notes.

    Returns:
        PublishResult: the registered card and the reports.

    Raises:
        ValueError: bad input (no real audio for the parity check, int8 asked without soundscapes or for an
            ensemble, ensemble members with other labels or front ends...).
        training.export.ExportError: export or parity failed; nothing was registered.
    """
    export_cfg = export_cfg or ExportConfig()
    quantize_cfg = quantize_cfg or QuantizeConfig()
    paths = [Path(checkpoint)] if isinstance(checkpoint, str | os.PathLike) else [Path(c) for c in checkpoint]
    if not paths:
        raise ValueError("no checkpoint to publish")
    if len(paths) > 1 and quantize:
        raise ValueError("int8 quantization of an ensemble is not supported (the quantizer would keep only one "
                         "member's stem and classifier in fp32 and put the members' combination on a uint8 "
                         "scale); publish the ensemble in fp32, or quantize single models")
    members = [Checkpoint.load(p) for p in paths]
    if len(members) > 1:
        check_ensemble_members(members, [str(p) for p in paths])
    checkpoint, ckpt = paths[0], members[0]  # labels, front end and training data of the (first) model
    frontend, codes = ckpt.frontend, ckpt.codes
    if (soundscapes_labels is None) != (soundscapes_dir is None):
        raise ValueError("soundscapes_labels and soundscapes_dir must be given together")

    with tempfile.TemporaryDirectory(prefix="soundscape-export-") as tmp:
        tmp = Path(tmp)
        if validation is None and soundscapes_labels is not None:
            validation = load_validation(soundscapes_labels, soundscapes_dir, codes, frontend,
                                         cache_dir=cache_dir or tmp / "cache")
        elif validation is None:
            validation = _selection_validation(ckpt, codes, cache_dir)
        if validation is not None:
            if list(validation.codes) != codes or validation.frontend != frontend:
                raise ValueError("the validation windows were loaded for other labels or another front end")
            images = spread_images(frontend, validation.windows, export_cfg.parity_windows)
        else:
            sources = list(audio or [])
            root = ckpt.train_config.get("audio_root")
            if not sources and root and Path(root).is_dir():
                sources = [root]
            if not sources:
                raise ValueError(f"{checkpoint}: no real audio for the parity check (the training data is gone); "
                                 "pass audio files or folders (--audio) or labelled soundscapes")
            images = real_images(frontend, sources, export_cfg.parity_windows)
        if quantize and validation is None:
            raise ValueError("int8 quantization needs validation windows to check the metric (the training data "
                             "is gone); pass --soundscapes-labels and --soundscapes-dir, or drop --quantize")

        models = [model_from_checkpoint(m) for m in members]
        fp32_path = tmp / "model.fp32.onnx"
        exported = export_onnx(models[0] if len(models) == 1 else models, fp32_path, images, export_cfg)
        extra: dict[str, Any] = {"export": {**exported.parity(), "opset": export_cfg.opset,
                                            "tolerances": {"prob_atol": export_cfg.prob_atol,
                                                           "atol": export_cfg.atol, "rtol": export_cfg.rtol}}}
        if len(members) == 1:
            extra["checkpoint"] = str(checkpoint)
        card = build_card(members, exported, name=name, parent_version=parent_version, extra_training=extra,
                          notes=notes, member_paths=paths)

        evaluation = None
        chosen, report = fp32_path, None
        if validation is not None:
            evaluation = evaluate_model(unregistered_model(card, fp32_path), validation, desc="scoring fp32")
        if quantize:
            int8_card = card.model_copy(update={"precision": "int8"})

            int8_eval: list[Evaluation] = []

            def score(path: Path) -> dict[str, float]:
                int8_eval.append(evaluate_model(unregistered_model(int8_card, path), validation,
                                                desc="scoring int8"))
                return int8_eval[-1].metrics

            calibration = spread_images(frontend, validation.windows, quantize_cfg.calibration_windows)
            int8_path = tmp / "model.int8.onnx"
            report = quantize_and_check(fp32_path, int8_path, calibration=calibration, score=score,
                                        cfg=quantize_cfg, fp32_metrics=evaluation.metrics)
            extra["quantization"] = report.to_dict()
            if report.accepted:
                chosen, evaluation = int8_path, int8_eval[-1]
        update: dict[str, Any] = {"training": {**card.training, **extra}}
        if chosen != fp32_path:
            update["precision"] = "int8"
        if evaluation is not None:
            update["metrics"] = evaluation.metrics
            update["per_species_ap"] = evaluation.per_species_ap
            update["validation"] = card.validation.model_copy(update={"metrics_from": validation.kind})
            if validation.kind == "soundscapes":
                update["data"] = card.data.model_copy(update={"val_soundscapes": validation.n_soundscapes})
        card = card.model_copy(update=update)
        # the run's metrics.csv / curves.png; an ensemble keeps each member's as member<i>-<file>
        prefixes = [""] if len(paths) == 1 else [f"member{i}-" for i in range(len(paths))]
        extra_files = {prefix + f: path.parent / f for prefix, path in zip(prefixes, paths, strict=True)
                       for f in RUN_FILES if (path.parent / f).is_file()}
        registered = store.register(card, chosen, promote=promote, extra_files=extra_files)
    log.info("registered %s v%d (%s, %.1f MB)%s", registered.name, registered.version, registered.precision,
             store.version_dir(name, registered.version).joinpath("model.onnx").stat().st_size / 1e6,
             " and promoted it" if promote else "")
    return PublishResult(card=registered, export=exported, quantization=report, evaluation=evaluation,
                         validation=validation)
