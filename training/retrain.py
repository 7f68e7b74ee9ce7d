"""Champion / challenger retraining: train, compare on the same soundscapes, promote only if better.

:func:`retrain`:

1. trains a challenger on the given data (:func:`training.train.train`);
2. exports, checks and registers the challenger through :func:`training.register.publish`, **always, but
   unpromoted** (so a kept-out challenger stays inspectable: ``soundscape models show birds N``);
3. scores the production model (champion) and the challenger with the same function
   (:func:`training.evaluate.evaluate_model`, the serving path) on the same windows: the labelled
   soundscapes when given, else one pseudo-soundscape set (held-out clips in field-like beds, see
   :mod:`training.pseudo_soundscapes`) built once from the challenger's data;
4. promotes the challenger when ``challenger >= champion + margin`` on ``metric``, or when there is no
   champion yet; otherwise production is left as it is;
5. writes ``retrain_report.json`` and ``retrain_report.md`` to the report folder.

Exit codes of ``soundscape retrain`` (:class:`RetrainExit`): ``0`` challenger promoted, ``10`` champion
kept, ``2`` bad input (missing files, bad settings), ``1`` failure (training, export, store).

Safe while a service reads the same store: registration assembles a version in a temporary folder and
renames it into place, and promotion is one atomic pointer replacement (see :mod:`model_store.store`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from model_store import DEFAULT_MODEL_NAME, ModelStore, StoreError, StoreErrorCode

from .evaluate import ValidationData, evaluate_model, load_validation
from .metrics import Metric
from .quantize import QuantizeConfig

__all__ = ["RetrainConfig", "RetrainExit", "RetrainReport", "retrain"]

log = logging.getLogger(__name__)

REPORT_JSON = "retrain_report.json"
REPORT_MD = "retrain_report.md"


class RetrainExit(IntEnum):
    """Process exit codes of ``soundscape retrain``."""

    PROMOTED = 0
    FAILURE = 1
    BAD_INPUT = 2
    KEPT_CHAMPION = 10


class RetrainConfig(BaseModel):
    """Settings of one retraining run (the training settings are a nested :class:`TrainConfig`)."""

    model_config = ConfigDict(extra="forbid")

    train: dict = Field(..., description="TrainConfig fields (validated when the run starts).")
    store: Path = Field(..., description="Model store root.")
    name: str = Field(DEFAULT_MODEL_NAME, description="Model name in the store.")
    metric: Metric = Field("padded_cmap", description="Decision metric.")
    margin: float = Field(0.005, ge=0, description="The challenger must beat the champion by at least this.")
    quantize: bool = Field(False, description="Try int8 for the challenger (kept only if the metric holds).")
    quantize_tolerance: float = Field(0.01, ge=0, description="Largest metric drop accepted for int8.")
    report_dir: Path | None = Field(None, description="Where the reports go. (Default: the run directory)")


@dataclass
class RetrainReport:
    """The outcome, as written to ``retrain_report.json``."""

    decision: Literal["promoted", "kept_champion", "failed", "bad_input"]
    exit_code: int
    reason: str
    metric: str
    margin: float
    name: str
    store: str
    champion_version: int | None = None
    challenger_version: int | None = None
    production_version: int | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)
    challenger_metrics: dict[str, float] = field(default_factory=dict)
    champion_per_species_ap: dict[str, float] = field(default_factory=dict)
    challenger_per_species_ap: dict[str, float] = field(default_factory=dict)
    validation_set: str = ""
    validation_detail: str = ""
    validation_windows: int = 0
    validation_soundscapes: int = 0
    run_dir: str | None = None
    quantization: dict | None = None
    started_at: str = ""
    finished_at: str = ""

    def write(self, folder: Path) -> tuple[Path, Path]:
        """Write the JSON and Markdown reports into ``folder``; returns their paths."""
        folder.mkdir(parents=True, exist_ok=True)
        js, md = folder / REPORT_JSON, folder / REPORT_MD
        js.write_text(json.dumps(asdict(self), indent=2, default=str) + "\n", encoding="utf-8")
        md.write_text(self.markdown(), encoding="utf-8")
        return js, md

    def markdown(self) -> str:
        def fmt(v: float | None) -> str:
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"

        lines = [
            f"# Retrain report: {self.name}",
            "",
            f"**Decision: {self.decision}** (exit code {self.exit_code}). {self.reason}",
            "",
            f"- Store: `{self.store}`; production is now v{self.production_version}",
            f"- Champion: v{self.champion_version}; challenger: v{self.challenger_version}",
            f"- Rule: promote when challenger {self.metric} >= champion + {self.margin:g}",
            f"- Validation ({self.validation_set}): {self.validation_detail}",
            f"- Run: `{self.run_dir}`; {self.started_at} -> {self.finished_at}",
            "",
            "| metric | champion | challenger |",
            "| --- | --- | --- |",
            *(f"| {k} | {fmt(self.champion_metrics.get(k))} | {fmt(self.challenger_metrics.get(k))} |"
              for k in ("macro_roc_auc", "padded_cmap")),
            "",
        ]
        codes = sorted(set(self.champion_per_species_ap) | set(self.challenger_per_species_ap))
        if codes:
            lines += ["## Per-species AP", "", "| species | champion | challenger |", "| --- | --- | --- |",
                      *(f"| {c} | {fmt(self.champion_per_species_ap.get(c))} | "
                        f"{fmt(self.challenger_per_species_ap.get(c))} |" for c in codes), ""]
        if self.quantization:
            lines += ["## Quantization", "", self.quantization.get("message", ""), ""]
        return "\n".join(lines)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def retrain(cfg: RetrainConfig) -> RetrainReport:
    """Train a challenger, compare it with production, promote it only if it is better.

    Args:
        cfg (RetrainConfig): data, store and decision settings.

    Returns:
        RetrainReport: the decision (also written as JSON and Markdown). Bad input and failures are
        reported too (``decision`` ``bad_input`` / ``failed``) rather than raised.
    """
    from training.config import TrainConfig

    started = _now()
    store = ModelStore(cfg.store)
    report = RetrainReport(decision="failed", exit_code=int(RetrainExit.FAILURE), reason="", metric=cfg.metric,
                           margin=cfg.margin, name=cfg.name, store=str(cfg.store), started_at=started)
    report_dir = cfg.report_dir
    try:
        train_cfg = TrainConfig.model_validate(cfg.train)
        report_dir = report_dir or train_cfg.out_dir
        report.run_dir = str(train_cfg.out_dir)
        for p in (train_cfg.soundscapes_labels, train_cfg.soundscapes_dir, train_cfg.metadata, train_cfg.audio_root,
                  train_cfg.species_dirs, train_cfg.raven.tables if train_cfg.raven else None,
                  train_cfg.unlabelled_dir):
            if p is not None and not Path(p).exists():
                raise FileNotFoundError(f"{p} does not exist")
    except (ValueError, FileNotFoundError) as exc:
        return _finish(report, report_dir, "bad_input", RetrainExit.BAD_INPUT, str(exc))
    try:
        champion = _load_champion(store, cfg.name)
    except StoreError as exc:  # e.g. a production model whose checksum no longer matches
        return _finish(report, report_dir, "failed", RetrainExit.FAILURE, f"cannot load the champion: {exc}")
    report.champion_version = champion.card.version if champion else None

    try:
        from training.train import train

        result = train(train_cfg)
    except (ValueError, FileNotFoundError) as exc:
        return _finish(report, report_dir, "bad_input", RetrainExit.BAD_INPUT, f"training input: {exc}")
    except Exception as exc:
        log.exception("training failed")
        return _finish(report, report_dir, "failed", RetrainExit.FAILURE, f"training failed: {exc}")

    try:
        from training.checkpoint import Checkpoint
        from training.register import PublishConfig, publish

        codes = Checkpoint.load(result.best_checkpoint).codes
        validation = _comparison_set(train_cfg, codes, train_cfg.frontend)
        report.validation_set, report.validation_detail = validation.kind, validation.detail
        published = publish(result.best_checkpoint, store, PublishConfig(
            name=cfg.name, quantize=cfg.quantize, promote=False, parent_version=report.champion_version,
            cache_dir=train_cfg.resolved_cache_dir,
            quantization=QuantizeConfig(metric=cfg.metric, tolerance=cfg.quantize_tolerance),
            notes="challenger of soundscape retrain"), validation=validation)
        challenger = published.card
        report.challenger_version = challenger.version
        report.challenger_metrics = published.evaluation.metrics
        report.challenger_per_species_ap = published.evaluation.per_species_ap
        report.validation_windows = published.evaluation.n_windows
        report.validation_soundscapes = published.validation.n_soundscapes
        report.quantization = published.quantization.to_dict() if published.quantization else None

        if champion is None:
            store.promote(cfg.name, challenger.version)
            return _finish(report, report_dir, "promoted", RetrainExit.PROMOTED,
                           f"no production model yet: v{challenger.version} promoted", store)
        data = published.validation
        if champion.card.frontend != data.frontend:  # score the champion on its own windows of the same data
            data = _comparison_set(train_cfg, data.codes, champion.card.frontend)
        champ_eval = evaluate_model(champion, data, desc="scoring champion")
        report.champion_metrics = champ_eval.metrics
        report.champion_per_species_ap = champ_eval.per_species_ap
        new, old = report.challenger_metrics[cfg.metric], champ_eval.metrics[cfg.metric]
        if math.isnan(old) or new >= old + cfg.margin:
            store.promote(cfg.name, challenger.version)
            return _finish(report, report_dir, "promoted", RetrainExit.PROMOTED,
                           f"challenger v{challenger.version} {cfg.metric} {new:.4f} >= champion "
                           f"v{champion.card.version} {old:.4f} + margin {cfg.margin:g}", store)
        return _finish(report, report_dir, "kept_champion", RetrainExit.KEPT_CHAMPION,
                       f"challenger v{challenger.version} {cfg.metric} {new:.4f} < champion v{champion.card.version} "
                       f"{old:.4f} + margin {cfg.margin:g}; challenger registered but not promoted", store)
    except ValueError as exc:
        return _finish(report, report_dir, "bad_input", RetrainExit.BAD_INPUT, str(exc), store)
    except Exception as exc:
        log.exception("retrain failed after training")
        return _finish(report, report_dir, "failed", RetrainExit.FAILURE, f"{type(exc).__name__}: {exc}", store)


def _comparison_set(train_cfg, codes: list[str], frontend) -> ValidationData:
    """The windows both models are scored on: labelled soundscapes when given, else pseudo-soundscapes."""
    if train_cfg.soundscapes_labels is not None:
        return load_validation(train_cfg.soundscapes_labels, train_cfg.soundscapes_dir, codes, frontend,
                               cache_dir=train_cfg.resolved_cache_dir)
    from training.validation import selection_validation

    pseudo = train_cfg.model_copy(update={"validation": "pseudo_soundscapes", "frontend": frontend})
    return selection_validation(pseudo, codes)


def _load_champion(store: ModelStore, name: str):
    """The verified production model, or None when there is none yet."""
    try:
        return store.load(name)
    except StoreError as exc:
        if exc.code in (StoreErrorCode.NOT_FOUND, StoreErrorCode.NO_PRODUCTION) and store.production(name) is None:
            return None
        raise


def _finish(report: RetrainReport, folder: Path | None, decision: str, code: RetrainExit, reason: str,
            store: ModelStore | None = None) -> RetrainReport:
    report.decision = decision
    report.exit_code = int(code)
    report.reason = reason
    report.finished_at = _now()
    if store is not None:
        try:
            report.production_version = store.production(report.name)
        except StoreError:
            report.production_version = None
    (log.info if code in (RetrainExit.PROMOTED, RetrainExit.KEPT_CHAMPION) else log.error)(
        "retrain: %s (%s)", decision, reason)
    if folder is not None:
        js, _ = report.write(Path(folder))
        log.info("report: %s", js)
    return report
