"""The validation sets of a run: pseudo-soundscapes, held-out clips and labelled soundscapes.

:func:`validation_sets` builds every set the data allows, in one label space and at the front end's rate,
as :class:`~training.evaluate.ValidationData`; the training loop scores all of them each epoch and selects
checkpoints on ``cfg.validation``. :func:`selection_validation` rebuilds, from a checkpoint's training
config alone, the set that chose it, so export (``publish``) and ``retrain`` score ONNX files on the same
footing as training did. Every set is a pure function of the data and the seed. A training run keeps each set only as
:class:`ValidationImages`, the serving front end's images of its windows, computed once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundscape.audio import Frontend

from .config import TrainConfig
from .data import AudioCache, CachedStretch, Clip, ProblemReport, crop, holdout_split, list_audio_files, make_targets
from .evaluate import ValidationData
from .inputs import load_clips
from .pseudo_soundscapes import build_pseudo_soundscapes, generated_beds, quiet_starts, split_unlabelled
from .soundscapes import load_soundscapes

__all__ = ["ValidationImages", "clip_validation", "pseudo_validation", "quiet_beds", "quiet_windows",
           "selection_validation", "soundscape_validation", "validation_sets"]

log = logging.getLogger(__name__)

GENERATED_BEDS = 64


@dataclass(frozen=True)
class ValidationImages:
    """A validation set as the model sees it: the serving front end's images of its windows.

    A training run scores its sets every epoch: it computes their images once (:meth:`of`) and lets the waveforms
    go, a quarter of their memory at 128 x 313 for 5 s at 32 kHz. The images are the ones the waveforms would give
    batch by batch, so every metric is the same.

    Attributes:
        images (np.ndarray): ``(n_windows, n_mels, frames)`` float32.
        targets, codes, kind, detail, blocks: as in :class:`~training.evaluate.ValidationData`.
    """

    images: np.ndarray
    targets: np.ndarray
    codes: list[str]
    kind: str
    detail: str
    blocks: int = 1

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def of(cls, vd: ValidationData, batch_size: int = 16) -> ValidationImages:
        """``vd``'s images, computed ``batch_size`` windows at a time into one array."""
        fe, n = Frontend(vd.frontend), len(vd.windows)
        images: np.ndarray | None = None
        for a in range(0, n, batch_size):
            batch = fe(vd.windows[a : a + batch_size])
            if images is None:
                images = np.empty((n, *batch.shape[1:]), np.float32)
            images[a : a + len(batch)] = batch
        if images is None:
            raise ValueError(f"validation set {vd.kind!r} holds no window")
        return cls(images=images, targets=vd.targets, codes=list(vd.codes), kind=vd.kind, detail=vd.detail,
                   blocks=vd.blocks)


def clip_validation(held_out: Sequence[Clip], codes: Sequence[str], cfg: TrainConfig,
                    cache: AudioCache) -> ValidationData:
    """The first window of each held-out clip (or held-out part), with its primary and secondary labels."""
    length = cfg.frontend.window_samples
    windows = np.stack([crop(c.samples(cache), length, None) for c in held_out])
    return ValidationData(windows=windows, targets=make_targets(held_out, codes, cfg.secondary_weight),
                          codes=list(codes), frontend=cfg.frontend, n_soundscapes=0, kind="clips",
                          detail=f"first {cfg.frontend.window_s:g} s of {len(held_out)} held-out clips")


def quiet_beds(files: Sequence[Path], cache: AudioCache, problems: ProblemReport, length: int, quiet_fraction: float,
               *, workers: int = 1) -> tuple[list[CachedStretch], int]:
    """Decode ``files`` (unreadable ones go to ``problems``) and find their quietest windows (:func:`quiet_starts`),
    as references into the cache (training's beds).

    Returns:
        tuple: the windows, file by file, quietest first, and how many recordings were readable.
    """
    ok = cache.prepare(list(files), problems, workers=workers, desc="decoding unlabelled beds")
    readable = [f for f, good in zip(files, ok, strict=True) if good]
    beds = [CachedStretch(cache, f, a, a + length) for f in readable
            for a in quiet_starts(cache.load(f), cache.sample_rate, length, quiet_fraction)]
    return beds, len(readable)


def quiet_windows(files: Sequence[Path], cache: AudioCache, problems: ProblemReport, length: int,
                  quiet_fraction: float, *, workers: int = 1) -> tuple[np.ndarray, int]:
    """:func:`quiet_beds`' windows as one array ``(n, length)`` (:func:`~training.pseudo_soundscapes.bed_windows`),
    and how many recordings were readable."""
    beds, readable = quiet_beds(files, cache, problems, length, quiet_fraction, workers=workers)
    windows = np.stack([b.samples() for b in beds]) if beds else np.zeros((0, length), np.float32)
    return windows, readable


def _beds(cfg: TrainConfig, cache: AudioCache, problems: ProblemReport) -> tuple[np.ndarray, str]:
    fe = cfg.frontend
    if cfg.unlabelled_dir is not None:
        files, _ = split_unlabelled(list_audio_files(cfg.unlabelled_dir))
        beds, readable = quiet_windows(files, cache, problems, fe.window_samples, cfg.pseudo.bed_quiet_fraction)
        if len(beds):
            return beds, f"unlabelled ({len(beds)} quietest windows of {readable} recordings)"
        log.warning("no unlabelled recording in %s holds a whole window: generated beds instead", cfg.unlabelled_dir)
    rng = np.random.default_rng([cfg.seed, cfg.pseudo.seed, 104729])
    return generated_beds(GENERATED_BEDS, fe.sample_rate, fe.window_samples, rng), "generated noise"


def pseudo_validation(held_out: Sequence[Clip], codes: Sequence[str], cfg: TrainConfig, cache: AudioCache,
                      problems: ProblemReport) -> ValidationData:
    """Held-out clips mixed into field-like beds (see :mod:`training.pseudo_soundscapes`)."""
    index = {c: i for i, c in enumerate(codes)}
    sources = [np.asarray(c.samples(cache)) for c in held_out]
    beds, where = _beds(cfg, cache, problems)
    built = build_pseudo_soundscapes(sources, [index[c.primary] for c in held_out], len(codes), beds,
                                     cfg.frontend.sample_rate, cfg.frontend.window_samples, cfg.pseudo,
                                     seed=cfg.seed, beds_kind="unlabelled" if where.startswith("unl") else "generated")
    missing = sorted(set(codes) - {c.primary for c in held_out})
    if missing:
        log.warning("no held-out audio for %s: they never occur in the pseudo-soundscapes", missing)
    blocks = max(1, len(built.windows) // cfg.pseudo.block_windows)
    return ValidationData(windows=built.windows, targets=built.targets, codes=list(codes), frontend=cfg.frontend,
                          n_soundscapes=0, kind="pseudo_soundscapes", blocks=blocks,
                          detail=f"{len(built.windows)} windows ({blocks} blocks), {len(built.placements)} calls "
                                 f"from {len(held_out)} held-out clips on {where} beds")


def soundscape_validation(cfg: TrainConfig, codes: Sequence[str], cache: AudioCache,
                          problems: ProblemReport) -> ValidationData:
    """The labelled soundscapes' windows (the service's windowing)."""
    sc = load_soundscapes(cfg.soundscapes_labels, cfg.soundscapes_dir, codes, cfg.frontend, cache, problems)
    return ValidationData(windows=sc.windows, targets=sc.targets, codes=list(codes), frontend=cfg.frontend,
                          n_soundscapes=sc.n_soundscapes, kind="soundscapes",
                          detail=f"{len(sc)} labelled windows of {sc.n_soundscapes} soundscapes")


def validation_sets(cfg: TrainConfig, held_out: Sequence[Clip], codes: Sequence[str], cache: AudioCache,
                    problems: ProblemReport) -> dict[str, ValidationData]:
    """Every validation set the data allows, the selecting one (``cfg.validation``) first."""
    sets: dict[str, ValidationData] = {}
    if held_out:
        sets["pseudo_soundscapes"] = pseudo_validation(held_out, codes, cfg, cache, problems)
        sets["clips"] = clip_validation(held_out, codes, cfg, cache)
    if cfg.soundscapes_labels is not None:
        sets["soundscapes"] = soundscape_validation(cfg, codes, cache, problems)
    if cfg.validation not in sets:
        raise ValueError(f"validation={cfg.validation!r} has no data (held-out clips: {len(held_out)})")
    return {cfg.validation: sets[cfg.validation], **{k: v for k, v in sets.items() if k != cfg.validation}}


def selection_validation(train_config: TrainConfig | dict, codes: Sequence[str], *,
                         cache_dir: str | Path | None = None) -> ValidationData:
    """Rebuild the validation set that selected a run's checkpoint, from its training config.

    Args:
        train_config (TrainConfig | dict): the run's config (a checkpoint's ``train_config``).
        codes (Sequence[str]): the checkpoint's label codes (the set's columns).
        cache_dir (path, optional): decoded-audio cache. (Default: the run's)

    Raises:
        FileNotFoundError: the run's data is gone.
        ValueError: the data no longer gives a usable set.
    """
    cfg = TrainConfig.model_validate(train_config)
    cache = AudioCache(cache_dir or cfg.resolved_cache_dir, cfg.frontend.sample_rate)
    problems = ProblemReport()
    if cfg.validation == "soundscapes":
        return soundscape_validation(cfg, codes, cache, problems)
    clips, _ = load_clips(cfg, cache, problems)
    _, held_out = holdout_split(clips, cfg.val_fraction, cfg.seed, cache)
    held_out = [c for c in held_out if c.primary in set(codes)]
    if cfg.validation == "clips":
        return clip_validation(held_out, codes, cfg, cache)
    return pseudo_validation(held_out, codes, cfg, cache, problems)
