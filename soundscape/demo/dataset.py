"""The demo dataset: synthetic focal clips, labelled soundscapes and background noise, BirdCLEF layout.

Two profiles (:mod:`soundscape.demo.profiles`): ``clean`` (isolated calls over the background, the
default) and ``field`` (bouts heard at a distance in reverberant sites, :mod:`soundscape.demo.field`).

Layout of ``out_dir`` (``dataset.json`` is written last, so its presence means the dataset is complete)::

    train_metadata.csv      primary_label, secondary_labels ("['code']" or "[]"), filename, rating, common_name
    train_audio/<code>/<code>_<nnn>.<wav|flac|ogg|mp3>
    taxonomy.csv            primary_label, common_name, scientific_name, call_type
    soundscapes/<soundscape_id>.ogg                    60 s each, 32 or 48 kHz
    soundscape_labels.csv   row_id (<soundscape_id>_<end_time>), soundscape_id, end_time (5..60), birds
    unlabelled/<id>.ogg                                field only: 60 s at 32 kHz, no labels, no events
    backgrounds/<kind>_<nnn>.ogg                       10-20 s of call-free noise
    dataset.json            profile, seed, size, species, unknown_species, counts, files (path -> sha256),
                            events (field: also "conditions", every condition of the soundscapes)

Labelling rule of a 5 s window (:mod:`soundscape.demo.scene`): a known species is listed when its phrases
overlap the window by at least ``LABEL_MIN_OVERLAP_S`` seconds in total, or when at least half of one of
its phrases lies inside the window (so every phrase, even a short chip, labels at least one window).
Unknown species (the profile's ``unknown_species``) are heard but never labelled; a window with no known
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
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft

from .encode import encode
from .field import field_conditions, render_field_soundscape
from .noise import NOISE_KINDS, render_noise
from .profiles import PROFILES, SIZES, Profile, SizeSpec
from .scene import (
    LABEL_MIN_OVERLAP_S,
    NOCALL,
    SOUNDSCAPE_RATES,
    SOUNDSCAPE_S,
    WINDOW_S,
    birds_per_window,
    render_bed,
    rms,
    stream,
)
from .species import Species, Voice, render_sequence

__all__ = ["LABEL_MIN_OVERLAP_S", "PROFILES", "SIZES", "SizeSpec", "generate_dataset"]

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
CLIP_EXTS = ("ogg", "wav", "flac", "mp3")
CLIP_RATES = (32000, 22050, 44100, 48000)
BACKGROUND_RATE = 32000
# streams of numpy.random.default_rng([seed, stream, ...]) (field soundscapes: 4 and 5, see .field)
_CLIP, _SOUNDSCAPE, _BACKGROUND = 1, 2, 3
# files and folders this generator owns inside out_dir (removed before writing, never anything else)
_OWNED = ("train_metadata.csv", "taxonomy.csv", "soundscape_labels.csv", "dataset.json",
          "train_audio", "soundscapes", "unlabelled", "backgrounds")


def _band_rms(x: np.ndarray, sample_rate: int, lo: float = 1000.0, hi: float = 12000.0) -> float:
    """RMS of ``x`` within ``[lo, hi]`` Hz (Parseval on the one-sided spectrum)."""
    m = scipy.fft.next_fast_len(len(x), real=True)  # zero padding keeps the energy, and is fast
    spec = np.abs(scipy.fft.rfft(x, m)) ** 2
    f = np.fft.rfftfreq(m, 1.0 / sample_rate)
    band = (f >= lo) & (f <= hi)
    return float(np.sqrt(2.0 * spec[band].sum() / (m * len(x))))


def _peak_to(x: np.ndarray, peak: float) -> np.ndarray:
    return x * (peak / (np.abs(x).max() + 1e-12))


def _clip(seed: int, spec: SizeSpec, table: tuple[Species, ...], k: int, j: int,
          i: int) -> tuple[bytes, str, dict[str, Any]]:
    """Focal clip ``j`` of species ``table[k]`` (global index ``i``): encoded bytes, extension and metadata."""
    rng = stream(seed, _CLIP, k, j)
    species = table[k]
    # cycling formats and rates over the global index guarantees every (format, rate) pair in 16 clips
    ext = CLIP_EXTS[i % len(CLIP_EXTS)]
    sr = CLIP_RATES[(i // len(CLIP_EXTS) + i) % len(CLIP_RATES)]
    duration = float(rng.uniform(*spec.clip_seconds))
    audio, _ = render_sequence(species, rng, sr, duration, Voice.draw(rng), first_at=float(rng.uniform(0.1, 0.6)))
    audio = _peak_to(audio, 1.0)
    secondary: list[str] = []
    if rng.random() < 0.25:
        other = table[int(rng.choice([x for x in range(len(table)) if x != k]))]
        faint, _ = render_sequence(other, rng, sr, duration, Voice.draw(rng), first_at=float(rng.uniform(0, 2)))
        audio += _peak_to(faint, 10 ** (rng.uniform(-24, -14) / 20))
        secondary.append(other.code)
    noise_db = float(rng.uniform(-46, -26))  # clean focal recordings: a little field noise
    kind = str(rng.choice(list(NOISE_KINDS), p=[0.5, 0.2, 0.15, 0.15]))
    noise = render_noise(kind, rng, len(audio), sr) + 0.5 * rng.standard_normal(len(audio))
    audio += noise * (10 ** (noise_db / 20) / rms(noise))
    audio = _peak_to(audio, float(rng.uniform(0.3, 0.9)))
    rating = int(np.clip(5 - int((noise_db + 46) // 5) - len(secondary), 1, 5))
    meta = {"primary_label": species.code, "secondary_labels": repr(secondary),
            "rating": rating, "common_name": species.common_name}
    return encode(audio, sr, ext), ext, meta


def _soundscape(seed: int, s: int, profile: Profile, weights: np.ndarray) -> tuple[bytes, list[str], dict[str, Any]]:
    """Clean soundscape ``s``: encoded OGG, the birds of each window, and its description (noise, events).

    Isolated calls (2-10 s) at ``profile.snr_db`` (RMS of the call's samples over the 1-12 kHz RMS of the
    whole background), no distance, no reverberation.
    """
    rng = stream(seed, _SOUNDSCAPE, s)
    sr = SOUNDSCAPE_RATES[s % len(SOUNDSCAPE_RATES)]
    n = SOUNDSCAPE_S * sr
    mix, noise = render_bed(rng, s, n, sr)
    floor = _band_rms(mix, sr)

    # a stretch of 2-3 windows where no known species calls guarantees nocall windows in every file
    q_len = int(rng.integers(profile.quiet_windows[0], profile.quiet_windows[1] + 1))
    q0 = float(WINDOW_S * rng.integers(0, SOUNDSCAPE_S // WINDOW_S - q_len + 1))
    q1 = q0 + WINDOW_S * q_len
    n_known = int(rng.integers(2, 6))
    known = rng.choice(len(profile.species), size=n_known, replace=False, p=weights)
    plan: list[tuple[Species, bool, float]] = []
    for k in known:
        plan += [(profile.species[int(k)], True, float(rng.uniform(*profile.snr_db)))
                 for _ in range(int(rng.integers(1, 4)))]
    for sp in profile.unknown_species:
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
        audio *= floor * 10 ** (snr_db / 20) / (rms(active) + 1e-12)
        i0 = int(round(start * sr))
        mix[i0:i0 + len(audio)] += audio[: n - i0]
        events.append({"species": sp.code, "labelled": is_known, "start_s": round(start + spans[0][0], 3),
                       "end_s": round(start + spans[-1][1], 3), "snr_db": round(snr_db, 1),
                       "phrases": [[round(start + a, 3), round(start + b, 3)] for a, b in spans]})
    peak = np.abs(mix).max()
    if peak > 0.95:  # a loud call near the microphone: scale the whole minute, never clip
        mix *= 0.95 / peak

    info = {"sample_rate": sr, "noise": noise, "quiet_s": [q0, q1], "events": events}
    return encode(mix, sr, "ogg"), birds_per_window(events), info


def _field_soundscape(seed: int, s: int, size: str, profile: Profile) -> tuple[bytes, list[str], dict[str, Any]]:
    """Field soundscape ``s`` (:mod:`soundscape.demo.field`): encoded OGG, the birds of each window, its info."""
    scape = render_field_soundscape(seed, s, size=size, profile=profile)
    return encode(scape.mix, scape.plan.sample_rate, "ogg"), scape.labels, scape.info()


def _unlabelled(seed: int, u: int, size: str, profile: Profile) -> bytes:
    """Soundscape ``u`` of ``unlabelled/``: a field minute of its own random stream, at 32 kHz."""
    scape = render_field_soundscape(seed, u, size=size, profile=profile, unlabelled=True)
    return encode(scape.mix, scape.plan.sample_rate, "ogg")


def _background(seed: int, b: int) -> tuple[bytes, str]:
    rng = stream(seed, _BACKGROUND, b)
    kind = list(NOISE_KINDS)[b % len(NOISE_KINDS)]
    n = int(rng.uniform(10, 20) * BACKGROUND_RATE)
    audio = render_noise(kind, rng, n, BACKGROUND_RATE) + 0.05 * rng.standard_normal(n)
    audio *= 10 ** (rng.uniform(-30, -20) / 20) / rms(audio)
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


def _remove_owned(root: Path) -> None:
    for name in _OWNED:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _write_clips(write: _Writer, seed: int, profile: Profile, spec: SizeSpec) -> int:
    """Focal clips, ``train_metadata.csv`` and ``taxonomy.csv``; returns the number of clips."""
    rows: list[list[Any]] = []
    i = 0
    for k, species in enumerate(profile.species):
        for j in range(spec.clips_per_species[k]):
            data, ext, meta = _clip(seed, spec, profile.species, k, j, i)
            filename = f"{species.code}/{species.code}_{j:03d}.{ext}"
            write(f"train_audio/{filename}", data)
            rows.append([meta["primary_label"], meta["secondary_labels"], filename, meta["rating"],
                         meta["common_name"]])
            i += 1
    write("train_metadata.csv", _csv_text(
        ["primary_label", "secondary_labels", "filename", "rating", "common_name"], rows))
    write("taxonomy.csv", _csv_text(
        ["primary_label", "common_name", "scientific_name", "call_type"],
        [[s.code, s.common_name, s.scientific_name, s.call_type] for s in profile.species]))
    log.info("wrote %d focal clips of %d species", len(rows), len(profile.species))
    return len(rows)


def _write_soundscapes(write: _Writer, seed: int, size: str, profile: Profile,
                       spec: SizeSpec) -> tuple[list[list[Any]], dict[str, Any]]:
    """Labelled soundscapes and ``soundscape_labels.csv``; returns the label rows and each one's info."""
    # common species are heard more often in the field too (clean: weights ~ sqrt of clip counts)
    weights = profile.prior(spec)
    label_rows: list[list[Any]] = []
    scapes: dict[str, Any] = {}
    for s in range(spec.n_soundscapes):
        sid = f"sc{s:04d}"
        if profile.propagation:
            data, labels, info = _field_soundscape(seed, s, size, profile)
        else:
            data, labels, info = _soundscape(seed, s, profile, weights)
        write(f"soundscapes/{sid}.ogg", data)
        scapes[sid] = info
        for w, birds in enumerate(labels):
            end = (w + 1) * WINDOW_S
            label_rows.append([f"{sid}_{end}", sid, end, birds])
    write("soundscape_labels.csv", _csv_text(["row_id", "soundscape_id", "end_time", "birds"], label_rows))
    log.info("wrote %d soundscapes", spec.n_soundscapes)
    for u in range(spec.n_unlabelled):
        write(f"unlabelled/ul{u:04d}.ogg", _unlabelled(seed, u, size, profile))
    if spec.n_unlabelled:
        log.info("wrote %d unlabelled soundscapes", spec.n_unlabelled)
    return label_rows, scapes


def generate_dataset(out_dir: str | os.PathLike, *, seed: int = 0, size: str = "tiny",
                     profile: str = "clean") -> Path:
    """Generate the synthetic demo bird-sound dataset in the BirdCLEF layout.

    The generator's own files and folders in ``out_dir`` (see the module docstring) are replaced; other
    files are left alone. ``dataset.json`` is written last.

    Args:
        out_dir (path): destination folder (created if missing).
        seed (int): random seed; the same seed gives byte-identical files. (Default: ``0``)
        size (str): ``tiny`` (tests), ``small`` (the default model) or ``bench`` (``small``'s clips and
            100 more soundscapes). clean: 50 clips + 3 soundscapes, 403 + 16, 403 + 116; field: 42 clips
            + 3 soundscapes + 4 unlabelled, 299 + 16 + 40, 299 + 116 + 40. (Default: ``"tiny"``)
        profile (str): ``clean`` (isolated calls, easy) or ``field`` (bouts heard at a distance in
            reverberant sites, flat species prior, more unknown species; see
            :mod:`soundscape.demo.profiles`). (Default: ``"clean"``)

    Returns:
        Path: ``out_dir``.

    Raises:
        ValueError: unknown ``size`` or ``profile``, or a negative ``seed``.

    Example:
        >>> root = generate_dataset("demo", seed=0, size="tiny")
        >>> (root / "train_metadata.csv").exists()
        True
    """
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not one of {sorted(PROFILES)}")
    prof = PROFILES[profile]
    if size not in prof.sizes:
        raise ValueError(f"size={size!r} is not one of {sorted(prof.sizes)}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    seed = int(seed)
    spec = prof.sizes[size]
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    _remove_owned(root)
    write = _Writer(root)

    n_clips = _write_clips(write, seed, prof, spec)
    label_rows, scapes = _write_soundscapes(write, seed, size, prof, spec)
    for b in range(spec.n_backgrounds):
        data, kind = _background(seed, b)
        write(f"backgrounds/{kind}_{b:03d}.ogg", data)

    counts: dict[str, Any] = {
        "species": len(prof.species),
        "train_clips": n_clips,
        "clips_per_species": {s.code: spec.clips_per_species[k] for k, s in enumerate(prof.species)},
        "soundscapes": spec.n_soundscapes,
        "windows": len(label_rows),
        "nocall_windows": sum(r[3] == NOCALL for r in label_rows),
        "backgrounds": spec.n_backgrounds,
    }
    manifest: dict[str, Any] = {
        "generator": f"soundscape.demo v{GENERATOR_VERSION}",
        "profile": profile,
        "seed": seed,
        "size": size,
        "species": [s.code for s in prof.species],
        "unknown_species": [s.code for s in prof.unknown_species],
        "counts": counts,
        "files": dict(sorted(write.files.items())),
        "soundscapes": scapes,
    }
    if prof.propagation:
        counts["unlabelled"] = spec.n_unlabelled
        manifest["conditions"] = field_conditions(prof, spec)
    write("dataset.json", (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return root
