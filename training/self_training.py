"""Self-training on the site's unlabelled recordings (noisy student, as the BirdCLEF 2024/2025 winners did).

Round 0 trains a model on the labelled clips (the teacher). Each further round:

1. **pseudo-labels**: the best model so far scores every 5-s window (the service's windowing) of the
   unlabelled recordings (less the quarter that gives validation beds); the probabilities are cached in
   ``round<r>/pseudo_labels.npz``, so a resumed run never scores twice;
2. **confidence policy** (:meth:`SelfTrainingConfig.targets`): a window whose highest probability is below
   ``floor``, or among the ``negative_share`` of windows with the lowest highest probability (a rule
   relative to the teacher: on the field profile the first teacher scored >= 0.1 somewhere in every window,
   so an absolute floor alone left no negative), is a *negative*: it trains with an all-zero target
   (``nocall``) and serves as a mixing bed;
   the others train with soft targets, each probability power-sharpened,
   ``q = p**a / (p**a + (1 - p)**a)`` with ``a = power``, and values below ``min_target`` set to 0;
3. **student**: trained on the clips plus those windows (``window_share`` of each epoch's samples drawn
   from them), with the full augmentation (so the student sees noisier inputs than the teacher did; the
   pseudo-labelled windows are also beds that clips are mixed into, their targets unioned), starting
   from the teacher's weights (``student_init="teacher"``) or from the pretrained weights;
4. **kept only if it improves** the monitored validation metric (the pseudo-soundscape set by default) over
   the best round so far; a round that does not improve is dropped and self-training stops.

Layout of the run directory: ``round0/``, ``round1/``, ... (each a complete run: checkpoints, metrics,
curves), ``self_training.json`` (every round's outcome; written after each round, so ``resume`` continues
mid-round from that round's ``last.pt``), and at the end ``best.pt`` (a copy of the kept round's best
checkpoint) and ``metrics.csv`` (every round's epochs, with a ``round`` column).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soundscape.audio import Frontend

from .config import TrainConfig
from .curves import write_metrics_csv
from .result import TrainResult

if TYPE_CHECKING:
    from soundscape.inference import Engine

    from .checkpoint import Checkpoint

__all__ = ["PseudoLabels", "label_unlabelled", "self_train", "teacher_engine"]

log = logging.getLogger(__name__)

STATE_FILE = "self_training.json"
PSEUDO_FILE = "pseudo_labels.npz"


@dataclass(frozen=True)
class PseudoLabels:
    """The teacher's probabilities for every window of the unlabelled recordings.

    Attributes:
        files (list[str]): recording of each window.
        starts_s (np.ndarray): ``(n,)`` window starts, seconds.
        probs (np.ndarray): ``(n, n_classes)`` float32 teacher probabilities.
        codes (list[str]): column order.
    """

    files: list[str]
    starts_s: np.ndarray
    probs: np.ndarray
    codes: list[str]

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez(tmp, files=np.asarray(self.files), starts_s=self.starts_s, probs=self.probs,
                 codes=np.asarray(self.codes))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> PseudoLabels:
        with np.load(path, allow_pickle=False) as z:
            return cls(files=[str(f) for f in z["files"]], starts_s=z["starts_s"], probs=z["probs"],
                       codes=[str(c) for c in z["codes"]])


def teacher_engine(checkpoint: str | os.PathLike | Checkpoint, images: np.ndarray, *,
                   threads: int | None = None) -> Engine:
    """The serving engine of a checkpoint: exported to ONNX in memory, checked, run by ONNX Runtime.

    Args:
        checkpoint (path | Checkpoint): the teacher's ``best.pt`` (or the loaded checkpoint).
        images (np.ndarray): ``(n, 1, n_mels, n_frames)`` real images for the export's parity check.
        threads (int, optional): ONNX Runtime intra-op threads. (Default: every CPU this process may use)

    Raises:
        training.export.ExportError: the export failed or does not match PyTorch.
    """
    from model_store import VerifiedModel
    from soundscape import available_cpus
    from soundscape.inference import Engine

    from .checkpoint import Checkpoint
    from .export import export_onnx_bytes, model_from_checkpoint
    from .register import build_card

    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else Checkpoint.load(checkpoint)
    onnx, exported = export_onnx_bytes(model_from_checkpoint(ckpt), images)
    card = build_card(ckpt, exported, name="teacher")
    where = Path(checkpoint).with_suffix(".onnx") if isinstance(checkpoint, str | os.PathLike) else Path("teacher.onnx")
    model = VerifiedModel(card=card, onnx_bytes=onnx, path=where)  # the path only names it in messages
    return Engine(model, intra_op_threads=threads or available_cpus())


def _parity_images(cut: Frontend, recordings: Iterable[np.ndarray], n: int) -> np.ndarray:
    """Images of the first ``n`` windows of ``recordings`` (the export's parity inputs)."""
    windows = []
    for audio in recordings:
        windows.extend(cut.windows(audio).samples[: n - len(windows)])
        if len(windows) >= n:
            break
    return cut(np.stack(windows))[:, None] if windows else np.zeros((0,), np.float32)


def label_unlabelled(checkpoint: Path, cfg: TrainConfig, *, batch_size: int = 32) -> PseudoLabels:
    """Score every window of ``cfg.unlabelled_dir`` with the teacher as the service would run it.

    The checkpoint is exported to ONNX in memory (:func:`teacher_engine`) and every window (cut by
    ``cfg.frontend``, the service's windowing) is scored by ONNX Runtime on the serving numpy front end,
    on every CPU, whatever the training device: the pseudo-labels are what the served teacher says.
    """
    from tqdm.auto import tqdm

    from .checkpoint import Checkpoint
    from .data import AudioCache, ProblemReport, list_audio_files
    from .export import ExportConfig
    from .pseudo_soundscapes import split_unlabelled

    ckpt = Checkpoint.load(checkpoint)
    codes = ckpt.codes
    cache = AudioCache(cfg.resolved_cache_dir, cfg.frontend.sample_rate)
    _, files = split_unlabelled(list_audio_files(cfg.unlabelled_dir))  # never the validation beds' recordings
    problems = ProblemReport()
    ok = cache.prepare(files, problems, desc="decoding unlabelled")
    files = [f for f, good in zip(files, ok, strict=True) if good]
    problems.log_summary()
    cutter = Frontend(cfg.frontend)
    images = _parity_images(cutter, (np.asarray(cache.load(f)) for f in files), ExportConfig().parity_windows)
    if not len(images):
        return PseudoLabels(files=[], starts_s=np.zeros(0), probs=np.zeros((0, len(codes)), np.float32), codes=codes)
    engine = teacher_engine(ckpt, images)
    names, starts, probs = [], [], []
    for file in tqdm(files, desc="pseudo-labelling", unit="file", leave=False):
        cut = cutter.windows(np.asarray(cache.load(file)))
        probs += [engine.run(engine.frontend(cut.samples[a : a + batch_size]))[0]
                  for a in range(0, len(cut.samples), batch_size)]
        names += [str(file)] * len(cut.samples)
        starts += [float(s) for s in cut.starts_s]
    p = np.concatenate(probs) if probs else np.zeros((0, len(codes)), np.float32)
    return PseudoLabels(files=names, starts_s=np.asarray(starts), probs=p.astype(np.float32), codes=codes)


@dataclass
class _State:
    rounds: list[dict]
    best_round: int | None = None

    @classmethod
    def load(cls, path: Path) -> _State:
        if not path.is_file():
            return cls(rounds=[])
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls(rounds=raw["rounds"], best_round=raw.get("best_round"))

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"rounds": self.rounds, "best_round": self.best_round}, indent=2) + "\n")
        os.replace(tmp, path)


def _round_config(cfg: TrainConfig, r: int, teacher: Path | None, resume: bool) -> TrainConfig:
    update: dict = {"out_dir": cfg.out_dir / f"round{r}", "resume": resume,
                    "cache_dir": cfg.resolved_cache_dir}
    if r > 0:
        st = cfg.self_training
        update["epochs"] = st.epochs or cfg.epochs
        if st.student_init == "teacher":
            update.update(checkpoint=teacher, pretrained=False)
    return cfg.model_copy(update=update)


def _pseudo_labels(round_dir: Path, teacher: Path, cfg: TrainConfig) -> PseudoLabels:
    path = round_dir / PSEUDO_FILE
    if path.is_file():
        log.info("round %s: pseudo-labels from the cache %s", round_dir.name, path)
        return PseudoLabels.load(path)
    round_dir.mkdir(parents=True, exist_ok=True)
    labels = label_unlabelled(teacher, cfg)
    labels.save(path)
    return labels


def self_train(cfg: TrainConfig, run) -> TrainResult:
    """Round 0 on the clips, then up to ``cfg.self_training.rounds`` student rounds (module docstring).

    Args:
        cfg (TrainConfig): the run (``unlabelled_dir`` set, ``self_training.rounds >= 1``).
        run (callable): ``run(cfg, pseudo_labels=None) -> TrainResult``, one training run.

    Returns:
        TrainResult: the kept round's result, with ``best_checkpoint`` at ``<out_dir>/best.pt`` and the
        history of every round (``round`` column).
    """
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    state = _State.load(state_path) if cfg.resume else _State(rounds=[])
    results: dict[int, TrainResult] = {}
    for r in range(cfg.self_training.rounds + 1):
        done = next((x for x in state.rounds if x["round"] == r), None)
        if done is not None and not done.get("kept", True):
            break  # an earlier attempt already dropped this round
        teacher = None if state.best_round is None else out / f"round{state.best_round}" / "best.pt"
        round_cfg = _round_config(cfg, r, teacher, resume=(out / f"round{r}" / "last.pt").is_file() and cfg.resume)
        if done is not None:  # finished before an interruption: rerun nothing, re-read its result
            round_cfg = round_cfg.model_copy(update={"resume": True})
        pseudo = _pseudo_labels(round_cfg.out_dir, teacher, cfg) if r > 0 else None
        result = run(round_cfg, pseudo_labels=pseudo)
        results[r] = result
        value = float(result.metrics.get(cfg.monitor, float("nan")))
        best = None if state.best_round is None else next(x["metric"] for x in state.rounds
                                                           if x["round"] == state.best_round)
        kept = r == 0 or (best is not None and value > best)
        log.info("self-training round %d: %s %.4f (best so far %s): %s", r, cfg.monitor, value,
                 "-" if best is None else f"{best:.4f}", "kept" if kept else "dropped")
        state.rounds = [x for x in state.rounds if x["round"] != r] + [
            {"round": r, "metric": value, "kept": kept, "best_checkpoint": str(result.best_checkpoint),
             "pseudo_windows": 0 if pseudo is None else len(pseudo.files), "epochs": len(result.history)}]
        if kept:
            state.best_round = r
        state.save(state_path)
        if not kept:
            break
    chosen = results[state.best_round]
    shutil.copyfile(chosen.best_checkpoint, out / ".best.pt.tmp")
    os.replace(out / ".best.pt.tmp", out / "best.pt")
    history = [{**h, "round": r} for r, res in sorted(results.items()) for h in res.history]
    write_metrics_csv(history, out / "metrics.csv")
    return TrainResult(run_dir=out, best_checkpoint=out / "best.pt", last_checkpoint=chosen.last_checkpoint,
                       metrics=chosen.metrics, history=history)
