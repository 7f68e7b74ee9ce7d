"""Pseudo-soundscapes: field-like validation windows built from held-out clips, without labelled soundscapes.

Nobody has labelled soundscapes from their own site, and held-out focal clips look like the training clips,
so they say nothing about the field. A pseudo-soundscape window is what a recorder hears instead:

1. a **bed**: a 5-s window of the user's own unlabelled recordings (``--unlabelled``), taken among the
   quietest ``bed_quiet_fraction`` of each recording's windows by 1-11 kHz band power (fewest birds that
   nobody labelled), else generated field noise (wind, rain, insects, hum and microphone hiss). Only a
   quarter of the recordings give beds (:func:`split_unlabelled`), and training never uses those (no bed
   mixing, no pseudo-labels), so the validation's backgrounds are unseen;
2. ``k`` species, ``k`` drawn from ``species_per_window`` (by default 35 % of windows are empty, then
   15/20/15/15 % hold 1/2/3/4 species: the mix of the ``field`` demo profile's labelled windows), each a
   different species drawn uniformly (every species counts the same in a macro metric);
3. for each, a bout: a segment of one of its **held-out** clips (never a training crop: a species with a
   single clip contributes the held-out end of it, see :func:`training.data.holdout_split`), the loudest
   ``segment_s`` (4-20 s, as the field's bouts; a shorter clip whole) of it (the most active 20 ms frames
   in the 1-11 kHz band);
4. the segment heard at a distance (:mod:`soundscape.propagation`: distance tied to SNR, distance
   low-pass, reverberation with the window's RT60 and a DRR falling with distance), placed at a random
   offset with at least ``min_overlap_s`` inside the window, at an SNR drawn from ``snr_db`` measured in
   the 1-11 kHz band against the bed over the call's extent.

The window's target is 1 for exactly the species placed in it. Metrics are averaged over blocks of
``block_windows`` (192: 16 one-minute soundscapes) windows: padded cmAP depends on how many positives each
species has, and blocks keep it comparable with a labelled set of that size (one check on a plain-recipe
checkpoint: one block of 384 windows scored 0.34 where its 192 labelled field windows scored 0.47; two
blocks of 192 scored 0.44). The set is a pure function of the held-out
clips, the beds and the seed: rebuilding it (another process, a resumed run, ``retrain`` scoring the
champion) gives the same windows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from soundscape.propagation import Propagation, active_mask, band_power, gain_for_snr, propagate

__all__ = ["MAX_BED_RECORDINGS", "Placement", "PseudoSoundscapeConfig", "PseudoSoundscapes", "bed_windows",
           "build_pseudo_soundscapes", "generated_beds", "loudest_segment", "quiet_starts", "split_unlabelled",
           "spread"]

MAX_BED_RECORDINGS = 64
VALIDATION_EVERY = 4

log = logging.getLogger(__name__)

Range = tuple[float, float]


class PseudoSoundscapeConfig(BaseModel):
    """How pseudo-soundscape validation windows are made (defaults follow the ``field`` demo profile)."""

    model_config = ConfigDict(extra="forbid")

    n_windows: int = Field(384, ge=8, description="Windows in the set.")
    block_windows: int = Field(192, ge=8, description="Metrics are averaged over blocks of this many windows "
                               "(16 one-minute soundscapes: the size of a small labelled set).")
    species_per_window: tuple[float, ...] = Field(
        (0.35, 0.15, 0.2, 0.15, 0.15), description="Probability of 0, 1, 2, ... species in a window.")
    snr_db: Range = Field((-6.0, 12.0), description="SNR range of placed calls, dB (1-11 kHz, over the call).")
    rt60_s: Range = Field((0.3, 1.2), description="Reverberation time range, seconds (one per window).")
    segment_s: Range = Field((4.0, 20.0), description="Length range of the placed clip segment (a bout), s; "
                             "a shorter clip is placed whole.")
    min_overlap_s: float = Field(1.0, gt=0, description="Least part of a placed segment inside the window, s.")
    bed_quiet_fraction: float = Field(0.3, gt=0, le=1, description="Quietest share of unlabelled windows used as beds.")
    seed: int = Field(0, description="Seed of the set (added to the run's seed).")

    @model_validator(mode="after")
    def _check(self) -> PseudoSoundscapeConfig:
        p = np.asarray(self.species_per_window, dtype=float)
        if len(p) < 2 or (p < 0).any() or not np.isclose(p.sum(), 1.0, atol=1e-6):
            raise ValueError(f"species_per_window={self.species_per_window} must be >= 2 probabilities summing to 1")
        for name in ("snr_db", "rt60_s", "segment_s"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}=({lo}, {hi}) must be (low, high) with low <= high")
        if self.rt60_s[0] <= 0 or self.segment_s[0] <= 0:
            raise ValueError("rt60_s and segment_s must be positive")
        return self


@dataclass(frozen=True)
class Placement:
    """One call placed into a pseudo-soundscape window (kept for inspection and tests)."""

    window: int
    species: int
    source: int
    offset_s: float
    snr_db: float
    path: Propagation


@dataclass(frozen=True)
class PseudoSoundscapes:
    """The built set.

    Attributes:
        windows (np.ndarray): ``(n_windows, window_samples)`` float32 audio.
        targets (np.ndarray): ``(n_windows, n_classes)`` float32, 1 for each species placed in the window.
        placements (list[Placement]): every placed call.
        beds (str): ``unlabelled`` or ``generated``.
    """

    windows: np.ndarray
    targets: np.ndarray
    placements: list[Placement]
    beds: str


def split_unlabelled(files: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Split the site's unlabelled recordings (sorted) between validation beds and training.

    Every ``VALIDATION_EVERY``-th recording (index 0, 4, 8, ...) gives pseudo-soundscape beds and is never
    trained on (no bed mixing, no pseudo-labels); the others are training's. With fewer than two
    recordings both sides share them (logged). The validation side is capped at ``MAX_BED_RECORDINGS``
    recordings spread over the list.

    Returns:
        tuple: validation recordings, training recordings.
    """
    files = sorted(files)
    if len(files) < 2:
        if files:
            log.warning("one unlabelled recording: validation beds and training share it (optimistic validation)")
        return list(files), list(files)
    val = files[::VALIDATION_EVERY]
    train = [f for i, f in enumerate(files) if i % VALIDATION_EVERY]
    return spread(val, MAX_BED_RECORDINGS), train


def spread(items: Sequence, n: int) -> list:
    """At most ``n`` of ``items``, evenly spaced over them (all of them when there are no more than ``n``)."""
    if len(items) <= n:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n).round()]


def _window_frames(x: np.ndarray, length: int) -> np.ndarray:
    n = len(x) // length
    return np.asarray(x[: n * length], dtype=np.float32).reshape(n, length)


def quiet_starts(recording: np.ndarray, sample_rate: int, length: int, quiet_fraction: float) -> list[int]:
    """Sample starts of the quietest ``quiet_fraction`` of the recording's whole windows by 1-11 kHz power
    (at least one; none when it holds no whole window), quietest first."""
    frames = _window_frames(recording, length)
    if not len(frames):
        return []
    power = np.array([band_power(f, sample_rate) for f in frames])
    keep = max(1, int(round(quiet_fraction * len(frames))))
    return [int(i) * length for i in np.argsort(power, kind="stable")[:keep]]


def bed_windows(recordings: Sequence[np.ndarray], sample_rate: int, length: int, quiet_fraction: float) -> np.ndarray:
    """The quietest ``quiet_fraction`` of each recording's whole windows (at least one per recording,
    :func:`quiet_starts`).

    Returns:
        np.ndarray: ``(n_beds, length)`` float32; empty when no recording holds a whole window.
    """
    beds = [np.asarray(rec[a : a + length], dtype=np.float32) for rec in recordings
            for a in quiet_starts(rec, sample_rate, length, quiet_fraction)]
    return np.stack(beds) if beds else np.zeros((0, length), np.float32)


def generated_beds(n: int, sample_rate: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` windows of generated field noise: 1-3 of wind, rain, insects, hum, plus microphone hiss.

    Returns:
        np.ndarray: ``(n, length)`` float32 at about -30..-20 dBFS RMS.
    """
    from soundscape.demo.noise import NOISE_KINDS, render_noise

    kinds = list(NOISE_KINDS)
    out = np.zeros((n, length), np.float32)
    for i in range(n):
        bed = 0.03 * rng.standard_normal(length)
        for kind in rng.choice(kinds, size=int(rng.integers(1, 4)), replace=False):
            bed += render_noise(str(kind), rng, length, sample_rate) * 10 ** (rng.uniform(-12, 0) / 20)
        out[i] = bed * 10 ** (rng.uniform(-30, -20) / 20) / (np.sqrt(np.mean(bed**2)) + 1e-12)
    return out


def loudest_segment(x: np.ndarray, sample_rate: int, length: int) -> np.ndarray:
    """The ``length``-sample part of ``x`` holding the most active (within 20 dB of the peak) 20 ms frames.

    A clip shorter than ``length`` is returned whole.
    """
    if len(x) <= length:
        return np.asarray(x, dtype=np.float64)
    cum = np.concatenate([[0], np.cumsum(active_mask(x, sample_rate))])
    counts = cum[length:] - cum[: len(cum) - length]  # active samples in each candidate segment
    start = int(np.argmax(counts))
    return np.asarray(x[start : start + length], dtype=np.float64)


def _place(bed: np.ndarray, segment: np.ndarray, snr_db: float, rt60_s: float, cfg: PseudoSoundscapeConfig,
           sample_rate: int, rng: np.random.Generator) -> tuple[np.ndarray, float, Propagation]:
    """``segment`` heard at a distance, at a random offset, scaled to ``snr_db`` against ``bed``.

    Returns:
        tuple: the call's contribution to the window ``(len(bed),)``, its offset (s) and its path.
    """
    path = Propagation.draw(snr_db, rt60_s, rng)
    wet = propagate(segment, sample_rate, path, rng)
    mask = np.zeros(len(wet), dtype=bool)
    mask[: len(segment)] = active_mask(segment, sample_rate)  # the call's extent (the tail rings on past it)
    n = len(bed)
    inside = min(int(cfg.min_overlap_s * sample_rate), len(segment), n)
    offset = int(rng.integers(inside - len(segment), n - inside + 1))  # may start before or end after the window
    lo, hi = max(0, offset), min(n, offset + len(wet))
    part, part_mask = wet[lo - offset : hi - offset], mask[lo - offset : hi - offset]
    out = np.zeros(n)
    out[lo:hi] = gain_for_snr(bed[lo:hi], part, snr_db, sample_rate, part_mask) * part
    return out, offset / sample_rate, path


def build_pseudo_soundscapes(sources: Sequence[np.ndarray], source_labels: Sequence[int], n_classes: int,
                             beds: np.ndarray, sample_rate: int, length: int, cfg: PseudoSoundscapeConfig,
                             *, seed: int = 0, beds_kind: str = "unlabelled") -> PseudoSoundscapes:
    """Mix held-out clip audio into beds (see the module docstring).

    Args:
        sources (Sequence[np.ndarray]): held-out audio at ``sample_rate``, one array per clip or segment.
        source_labels (Sequence[int]): class index of each source.
        n_classes (int): width of the targets.
        beds (np.ndarray): ``(n_beds, length)`` bed windows (see :func:`bed_windows`, :func:`generated_beds`).
        sample_rate (int): Hz.
        length (int): window length, samples.
        cfg (PseudoSoundscapeConfig): the recipe.
        seed (int): the run's seed (``cfg.seed`` is added).
        beds_kind (str): recorded in the result: ``unlabelled`` or ``generated``.

    Raises:
        ValueError: no source, no bed, or mismatched inputs.
    """
    if len(sources) != len(source_labels) or not len(sources):
        raise ValueError(f"need held-out audio with one label each; got {len(sources)} sources, "
                         f"{len(source_labels)} labels")
    if not len(beds) or beds.shape[1] != length:
        raise ValueError(f"need bed windows of {length} samples; got shape {beds.shape}")
    rng = np.random.default_rng([seed, cfg.seed, 7919])
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(source_labels):
        by_class.setdefault(int(c), []).append(i)
    classes = sorted(by_class)
    probs = np.asarray(cfg.species_per_window, dtype=float)
    windows = np.zeros((cfg.n_windows, length), np.float32)
    targets = np.zeros((cfg.n_windows, n_classes), np.float32)
    placements: list[Placement] = []
    for w in range(cfg.n_windows):
        k = min(int(rng.choice(len(probs), p=probs / probs.sum())), len(classes))
        bed = beds[int(rng.integers(len(beds)))].astype(np.float64)
        mix = bed.copy()
        rt60 = float(rng.uniform(*cfg.rt60_s))
        for c in rng.choice(classes, size=k, replace=False):
            src = int(rng.choice(by_class[int(c)]))
            seg = loudest_segment(sources[src], sample_rate, int(rng.uniform(*cfg.segment_s) * sample_rate))
            snr = float(rng.uniform(*cfg.snr_db))
            call, offset_s, path = _place(bed, seg, snr, rt60, cfg, sample_rate, rng)
            mix += call
            targets[w, int(c)] = 1.0
            placements.append(Placement(window=w, species=int(c), source=src, offset_s=round(offset_s, 4),
                                        snr_db=round(snr, 2), path=path))
        windows[w] = mix
    log.info("pseudo-soundscapes: %d windows (%d calls, %.0f %% empty) on %s beds", cfg.n_windows,
             len(placements), 100 * float((targets.sum(1) == 0).mean()), beds_kind)
    return PseudoSoundscapes(windows=windows, targets=targets, placements=placements, beds=beds_kind)
