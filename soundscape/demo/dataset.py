"""The demo dataset: synthetic focal clips, labelled soundscapes and background noise, BirdCLEF layout.

Layout of ``out_dir`` (``dataset.json`` is written last, so its presence means the dataset is complete)::

    train_metadata.csv      primary_label, secondary_labels ("['code']" or "[]"), filename, rating, common_name
    train_audio/<code>/<code>_<nnn>.<wav|flac|ogg|mp3>
    taxonomy.csv            primary_label, common_name, scientific_name, call_type
    soundscapes/<soundscape_id>.ogg                    60 s each, 32 or 48 kHz
    soundscape_labels.csv   row_id (<soundscape_id>_<end_time>), soundscape_id, end_time (5..60), birds
    backgrounds/<kind>_<nnn>.ogg                       10-20 s of call-free noise
    dataset.json            seed, size, species, unknown_species, counts, files (path -> sha256), events

Labelling rule of a 5 s window: a known species is listed when its phrases overlap the window by at least
``LABEL_MIN_OVERLAP_S`` seconds in total, or when at least half of one of its phrases lies inside the
window (so every phrase, even a short chip, labels at least one window). Unknown species
(:data:`~soundscape.demo.species.UNKNOWN_SPECIES`) are heard but never labelled; a window with no known
species is ``nocall``.

Every file has its own random stream, ``numpy.random.default_rng([seed, stream, index...])``, so files do
not depend on generation order, "bench" contains "small"'s soundscapes, and the same seed gives
byte-identical files (see :mod:`soundscape.demo.encode` for OGG).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft

from .encode import encode
from .noise import NOISE_KINDS, render_noise
from .species import SPECIES, UNKNOWN_SPECIES, Species, Voice, render_sequence

__all__ = ["LABEL_MIN_OVERLAP_S", "SIZES", "SizeSpec", "generate_dataset"]

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
SOUNDSCAPE_S = 60
WINDOW_S = 5
LABEL_MIN_OVERLAP_S = 0.5
NOCALL = "nocall"
CLIP_EXTS = ("ogg", "wav", "flac", "mp3")
CLIP_RATES = (32000, 22050, 44100, 48000)
SOUNDSCAPE_RATES = (32000, 48000)
BACKGROUND_RATE = 32000
# streams of numpy.random.default_rng([seed, stream, ...])
_CLIP, _SOUNDSCAPE, _BACKGROUND = 1, 2, 3
# files and folders this generator owns inside out_dir (removed before writing, never anything else)
_OWNED = ("train_metadata.csv", "taxonomy.csv", "soundscape_labels.csv", "dataset.json",
          "train_audio", "soundscapes", "backgrounds")


@dataclass(frozen=True)
class SizeSpec:
    """How much data one size holds.

    Attributes:
        clips_per_species (tuple[int, ...]): focal clips of each species, in ``SPECIES`` order (a long
            tail ending with one clip).
        n_soundscapes (int): number of 60 s labelled soundscapes.
        clip_seconds (tuple[float, float]): range of focal clip lengths, seconds.
        n_backgrounds (int): number of background noise files.
    """

    clips_per_species: tuple[int, ...]
    n_soundscapes: int
    clip_seconds: tuple[float, float]
    n_backgrounds: int


_SMALL_TAIL = (64, 56, 48, 42, 37, 32, 29, 26, 22, 18, 14, 10, 4, 1)
SIZES: dict[str, SizeSpec] = {
    # tests: 14 species, 50 clips, 3 soundscapes, a few seconds to generate
    "tiny": SizeSpec((7, 6, 5, 5, 4, 4, 4, 3, 3, 3, 2, 2, 1, 1), 3, (3.0, 6.0), 4),
    # the bundled default model: 403 clips, 16 soundscapes
    "small": SizeSpec(_SMALL_TAIL, 16, (3.0, 15.0), 16),
    # benchmarks: "small" plus 100 more one-minute soundscapes
    "bench": SizeSpec(_SMALL_TAIL, 116, (3.0, 15.0), 16),
}


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0


def _band_rms(x: np.ndarray, sample_rate: int, lo: float = 1000.0, hi: float = 12000.0) -> float:
    """RMS of ``x`` within ``[lo, hi]`` Hz (Parseval on the one-sided spectrum)."""
    m = scipy.fft.next_fast_len(len(x), real=True)  # zero padding keeps the energy, and is fast
    spec = np.abs(scipy.fft.rfft(x, m)) ** 2
    f = np.fft.rfftfreq(m, 1.0 / sample_rate)
    band = (f >= lo) & (f <= hi)
    return float(np.sqrt(2.0 * spec[band].sum() / (m * len(x))))


def _peak_to(x: np.ndarray, peak: float) -> np.ndarray:
    return x * (peak / (np.abs(x).max() + 1e-12))


def _clip(seed: int, spec: SizeSpec, k: int, j: int, i: int) -> tuple[bytes, str, dict[str, Any]]:
    """Focal clip ``j`` of species ``k`` (global index ``i``): encoded bytes, extension and metadata."""
    rng = _rng(seed, _CLIP, k, j)
    species = SPECIES[k]
    # cycling formats and rates over the global index guarantees every (format, rate) pair in 16 clips
    ext = CLIP_EXTS[i % len(CLIP_EXTS)]
    sr = CLIP_RATES[(i // len(CLIP_EXTS) + i) % len(CLIP_RATES)]
    duration = float(rng.uniform(*spec.clip_seconds))
    audio, _ = render_sequence(species, rng, sr, duration, Voice.draw(rng), first_at=float(rng.uniform(0.1, 0.6)))
    audio = _peak_to(audio, 1.0)
    secondary: list[str] = []
    if rng.random() < 0.25:
        other = SPECIES[int(rng.choice([x for x in range(len(SPECIES)) if x != k]))]
        faint, _ = render_sequence(other, rng, sr, duration, Voice.draw(rng), first_at=float(rng.uniform(0, 2)))
        audio += _peak_to(faint, 10 ** (rng.uniform(-24, -14) / 20))
        secondary.append(other.code)
    noise_db = float(rng.uniform(-46, -26))  # clean focal recordings: a little field noise
    kind = str(rng.choice(list(NOISE_KINDS), p=[0.5, 0.2, 0.15, 0.15]))
    noise = render_noise(kind, rng, len(audio), sr) + 0.5 * rng.standard_normal(len(audio))
    audio += noise * (10 ** (noise_db / 20) / _rms(noise))
    audio = _peak_to(audio, float(rng.uniform(0.3, 0.9)))
    rating = int(np.clip(5 - int((noise_db + 46) // 5) - len(secondary), 1, 5))
    meta = {"primary_label": species.code, "secondary_labels": repr(secondary),
            "rating": rating, "common_name": species.common_name}
    return encode(audio, sr, ext), ext, meta


def _window_labels(phrases: list[tuple[float, float]]) -> set[int]:
    """Indices of the 5 s windows a species' phrases label (see the module's labelling rule)."""
    labelled = set()
    for w in range(SOUNDSCAPE_S // WINDOW_S):
        lo, hi = w * WINDOW_S, (w + 1) * WINDOW_S
        overlaps = [(max(0.0, min(b, hi) - max(a, lo)), b - a) for a, b in phrases]
        if sum(o for o, _ in overlaps) >= LABEL_MIN_OVERLAP_S or any(o >= 0.5 * d for o, d in overlaps if o):
            labelled.add(w)
    return labelled


def _soundscape(seed: int, s: int, weights: np.ndarray) -> tuple[bytes, list[str], dict[str, Any]]:
    """Soundscape ``s``: encoded OGG, the birds of each window, and its description (noise, events)."""
    rng = _rng(seed, _SOUNDSCAPE, s)
    sr = SOUNDSCAPE_RATES[s % len(SOUNDSCAPE_RATES)]
    n = SOUNDSCAPE_S * sr
    kinds = list(NOISE_KINDS)
    noise = [kinds[s % len(kinds)]] + [x for x in kinds if x != kinds[s % len(kinds)] and rng.random() < 0.35]
    base_db = {"wind": 0.0, "rain": -3.0, "insects": -9.0, "hum": -12.0}
    mix = 0.03 * rng.standard_normal(n)  # microphone self-noise
    for kind in noise:
        mix += render_noise(kind, rng, n, sr) * 10 ** ((base_db[kind] + rng.uniform(-4, 4)) / 20)
    mix *= 10 ** (rng.uniform(-32, -24) / 20) / _rms(mix)
    floor = _band_rms(mix, sr)

    # a stretch of 2-3 windows where no known species calls guarantees nocall windows in every file
    q_len = int(rng.integers(2, 4))
    q0 = float(WINDOW_S * rng.integers(0, SOUNDSCAPE_S // WINDOW_S - q_len + 1))
    q1 = q0 + WINDOW_S * q_len
    n_known = int(rng.integers(2, 6))
    known = rng.choice(len(SPECIES), size=n_known, replace=False, p=weights)
    plan: list[tuple[Species, bool, float]] = []
    for k in known:
        plan += [(SPECIES[int(k)], True, float(rng.uniform(-3, 20))) for _ in range(int(rng.integers(1, 4)))]
    for sp in UNKNOWN_SPECIES:
        plan += [(sp, False, float(rng.uniform(6, 15))) for _ in range(int(rng.integers(1, 3)))]

    voices = {sp.code: Voice.draw(rng) for sp, _, _ in plan}  # one bird per species per soundscape
    events: list[dict[str, Any]] = []
    for sp, is_known, snr_db in plan:
        dur = float(rng.uniform(2.0, 10.0))
        for _ in range(20):
            start = float(rng.uniform(0.0, SOUNDSCAPE_S - dur))
            if not is_known or start + dur <= q0 or start >= q1:
                break
        else:
            continue
        audio, spans = render_sequence(sp, rng, sr, dur, voices[sp.code], first_at=0.0)
        active = audio[np.abs(audio) > 1e-6]
        audio *= floor * 10 ** (snr_db / 20) / (_rms(active) + 1e-12)
        i0 = int(round(start * sr))
        mix[i0:i0 + len(audio)] += audio[: n - i0]
        events.append({"species": sp.code, "labelled": is_known, "start_s": round(start + spans[0][0], 3),
                       "end_s": round(start + spans[-1][1], 3), "snr_db": round(snr_db, 1),
                       "phrases": [[round(start + a, 3), round(start + b, 3)] for a, b in spans]})
    peak = np.abs(mix).max()
    if peak > 0.95:  # a loud call near the microphone: scale the whole minute, never clip
        mix *= 0.95 / peak

    birds: list[set[str]] = [set() for _ in range(SOUNDSCAPE_S // WINDOW_S)]
    for ev in events:
        if ev["labelled"]:
            for w in _window_labels([tuple(p) for p in ev["phrases"]]):
                birds[w].add(ev["species"])
    labels = [" ".join(sorted(b)) or NOCALL for b in birds]
    info = {"sample_rate": sr, "noise": noise, "quiet_s": [q0, q1], "events": events}
    return encode(mix, sr, "ogg"), labels, info


def _background(seed: int, b: int) -> tuple[bytes, str]:
    rng = _rng(seed, _BACKGROUND, b)
    kind = list(NOISE_KINDS)[b % len(NOISE_KINDS)]
    n = int(rng.uniform(10, 20) * BACKGROUND_RATE)
    audio = render_noise(kind, rng, n, BACKGROUND_RATE) + 0.05 * rng.standard_normal(n)
    audio *= 10 ** (rng.uniform(-30, -20) / 20) / _rms(audio)
    return encode(_peak_to(audio, 0.95) if np.abs(audio).max() > 0.95 else audio, BACKGROUND_RATE, "ogg"), kind


def _csv_text(header: list[str], rows: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


class _Writer:
    """Writes files under a root and remembers their sha256."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, str] = {}

    def __call__(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files[rel] = hashlib.sha256(data).hexdigest()


def generate_dataset(out_dir: str | os.PathLike, *, seed: int = 0, size: str = "tiny") -> Path:
    """Generate the synthetic demo bird-sound dataset in the BirdCLEF layout.

    The generator's own files and folders in ``out_dir`` (see the module docstring) are replaced; other
    files are left alone. ``dataset.json`` is written last.

    Args:
        out_dir (path): destination folder (created if missing).
        seed (int): random seed; the same seed gives byte-identical files. (Default: ``0``)
        size (str): ``tiny`` (tests, 50 clips, 3 soundscapes), ``small`` (the default model, 403 clips,
            16 soundscapes) or ``bench`` (``small`` plus 100 soundscapes). (Default: ``"tiny"``)

    Returns:
        Path: ``out_dir``.

    Raises:
        ValueError: unknown ``size`` or a negative ``seed``.

    Example:
        >>> root = generate_dataset("demo", seed=0, size="tiny")
        >>> (root / "train_metadata.csv").exists()
        True
    """
    if size not in SIZES:
        raise ValueError(f"size={size!r} is not one of {sorted(SIZES)}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    seed = int(seed)
    spec = SIZES[size]
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    for name in _OWNED:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    write = _Writer(root)

    rows: list[list[Any]] = []
    i = 0
    for k, species in enumerate(SPECIES):
        for j in range(spec.clips_per_species[k]):
            data, ext, meta = _clip(seed, spec, k, j, i)
            filename = f"{species.code}/{species.code}_{j:03d}.{ext}"
            write(f"train_audio/{filename}", data)
            rows.append([meta["primary_label"], meta["secondary_labels"], filename, meta["rating"],
                         meta["common_name"]])
            i += 1
    write("train_metadata.csv", _csv_text(
        ["primary_label", "secondary_labels", "filename", "rating", "common_name"], rows))
    write("taxonomy.csv", _csv_text(
        ["primary_label", "common_name", "scientific_name", "call_type"],
        [[s.code, s.common_name, s.scientific_name, s.call_type] for s in SPECIES]))
    log.info("wrote %d focal clips of %d species", len(rows), len(SPECIES))

    # common species are heard more often in the field too (weights ~ sqrt of clip counts)
    weights = np.sqrt(np.asarray(spec.clips_per_species, dtype=float))
    weights /= weights.sum()
    label_rows: list[list[Any]] = []
    scapes: dict[str, Any] = {}
    for s in range(spec.n_soundscapes):
        sid = f"sc{s:04d}"
        data, labels, info = _soundscape(seed, s, weights)
        write(f"soundscapes/{sid}.ogg", data)
        scapes[sid] = info
        for w, birds in enumerate(labels):
            end = (w + 1) * WINDOW_S
            label_rows.append([f"{sid}_{end}", sid, end, birds])
    write("soundscape_labels.csv", _csv_text(["row_id", "soundscape_id", "end_time", "birds"], label_rows))
    log.info("wrote %d soundscapes", spec.n_soundscapes)

    for b in range(spec.n_backgrounds):
        data, kind = _background(seed, b)
        write(f"backgrounds/{kind}_{b:03d}.ogg", data)

    per_species = {s.code: spec.clips_per_species[k] for k, s in enumerate(SPECIES)}
    manifest = {
        "generator": f"soundscape.demo v{GENERATOR_VERSION}",
        "seed": seed,
        "size": size,
        "species": [s.code for s in SPECIES],
        "unknown_species": [s.code for s in UNKNOWN_SPECIES],
        "counts": {
            "species": len(SPECIES),
            "train_clips": len(rows),
            "clips_per_species": per_species,
            "soundscapes": spec.n_soundscapes,
            "windows": len(label_rows),
            "nocall_windows": sum(r[3] == NOCALL for r in label_rows),
            "backgrounds": spec.n_backgrounds,
        },
        "files": dict(sorted(write.files.items())),
        "soundscapes": scapes,
    }
    write("dataset.json", (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return root
