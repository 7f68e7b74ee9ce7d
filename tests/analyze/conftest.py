"""Fixtures for batch analysis: a tiny real model store and real audio files of several formats."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.utils.models import make_store


def tone_noise(seconds: float, sr: int, seed: int, channels: int = 1) -> np.ndarray:
    """Noise plus a few chirps, so different windows give different probabilities."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    x = rng.normal(0, 0.05, n) + 0.3 * np.sin(2 * np.pi * (800 + 300 * seed) * t) * (np.sin(t / 3 + seed) > 0.3)
    x = x.astype(np.float32)
    return np.stack([x, x[::-1]], axis=1) if channels == 2 else x


@pytest.fixture(scope="session")
def store_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("analyze-store") / "store"
    make_store(root)
    return root


@pytest.fixture(scope="session")
def waveform_store_root(tmp_path_factory) -> Path:
    """A store serving the tiny waveform model (2-s model windows at 16 kHz in 5-s windows)."""
    root = tmp_path_factory.mktemp("analyze-waveform-store") / "store"
    make_store(root, kind="waveform")
    return root


@pytest.fixture(scope="session")
def recordings(tmp_path_factory) -> Path:
    """``in/`` with WAV (44.1 kHz stereo, partial last window), FLAC (16 kHz), OGG (in a subfolder) and
    ``broken.wav`` (not audio)."""
    root = tmp_path_factory.mktemp("analyze-in") / "in"
    (root / "site2").mkdir(parents=True)
    sf.write(root / "dawn_01.wav", tone_noise(23.1, 44100, 0, channels=2), 44100, subtype="PCM_16")
    sf.write(root / "dawn_02.flac", tone_noise(30.0, 16000, 1), 16000)
    sf.write(root / "site2" / "night.ogg", tone_noise(12.0, 22050, 2), 22050, format="OGG", subtype="VORBIS")
    (root / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(200))
    (root / "notes.txt").write_text("not audio, and not picked up by the folder walk")
    return root


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``soundscape analyze ...`` in a subprocess, the way a user runs it."""
    return subprocess.run([sys.executable, "-m", "soundscape.cli", "--log-level", "WARNING", "analyze", *args],
                          capture_output=True, text=True, timeout=timeout)


def output_files(out: Path) -> dict[str, bytes]:
    """Every output of a run except the run-specific journal and summary, by relative path."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in ("journal.jsonl", "summary.json")}
