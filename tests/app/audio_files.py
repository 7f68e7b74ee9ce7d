"""Real audio files for the service tests, written with soundfile (libsndfile)."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf


def tone(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A chirp plus noise, ``(frames, channels)`` float32 in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    sig = 0.3 * np.sin(2 * np.pi * (500 + 300 * t) * t) + 0.05 * rng.normal(size=t.shape)
    return np.stack([sig * (1 - 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)


def encode(seconds: float, rate: int, fmt: str = "WAV", subtype: str | None = None, channels: int = 1,
           seed: int = 0) -> bytes:
    """File bytes of :func:`tone` in a libsndfile format (written in blocks: big Vorbis writes crash)."""
    data = tone(seconds, rate, channels, seed)
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=rate, channels=channels, format=fmt, subtype=subtype) as f:
        for a in range(0, len(data), rate):
            f.write(data[a : a + rate])
    return buf.getvalue()


def wav(seconds: float = 12.0, rate: int = 16000, channels: int = 1, subtype: str = "PCM_16") -> bytes:
    return encode(seconds, rate, "WAV", subtype, channels)
