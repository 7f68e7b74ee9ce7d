"""Pieces shared by the clean and field soundscapes: random streams, the noise bed, window labels.

Labelling rule of a 5 s window: a known species is listed when its phrases overlap the window by at least
``LABEL_MIN_OVERLAP_S`` seconds in total, or when at least half of one of its phrases lies inside the
window (so every phrase, even a short chip, labels at least one window). A window with no known species
is ``nocall``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .noise import NOISE_KINDS, render_noise

__all__ = [
    "LABEL_MIN_OVERLAP_S",
    "NOCALL",
    "N_WINDOWS",
    "SOUNDSCAPE_RATES",
    "SOUNDSCAPE_S",
    "WINDOW_S",
    "birds_per_window",
    "render_bed",
    "rms",
    "stream",
    "window_labels",
]

SOUNDSCAPE_S = 60
WINDOW_S = 5
N_WINDOWS = SOUNDSCAPE_S // WINDOW_S
LABEL_MIN_OVERLAP_S = 0.5
NOCALL = "nocall"
SOUNDSCAPE_RATES = (32000, 48000)


def stream(seed: int, *index: int) -> np.random.Generator:
    """The random stream of one file: ``numpy.random.default_rng([seed, stream, index...])``."""
    return np.random.default_rng([seed, *index])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0


def render_bed(rng: np.random.Generator, s: int, n: int, sample_rate: int) -> tuple[np.ndarray, list[str]]:
    """The background of soundscape ``s``: its noise kinds mixed with microphone self-noise, -32..-24 dBFS RMS.

    The first kind cycles over wind, rain, insects, hum with ``s``; each other kind joins with chance 0.35.

    Returns:
        tuple: ``(n,)`` float64 audio and the list of noise kinds in it.
    """
    kinds = list(NOISE_KINDS)
    noise = [kinds[s % len(kinds)]] + [x for x in kinds if x != kinds[s % len(kinds)] and rng.random() < 0.35]
    base_db = {"wind": 0.0, "rain": -3.0, "insects": -9.0, "hum": -12.0}
    mix = 0.03 * rng.standard_normal(n)  # microphone self-noise
    for kind in noise:
        mix += render_noise(kind, rng, n, sample_rate) * 10 ** ((base_db[kind] + rng.uniform(-4, 4)) / 20)
    mix *= 10 ** (rng.uniform(-32, -24) / 20) / rms(mix)
    return mix, noise


def window_labels(phrases: Iterable[Sequence[float]]) -> set[int]:
    """Indices of the 5 s windows a species' phrases ``(start_s, end_s)`` label (see the module's rule)."""
    phrases = list(phrases)
    labelled = set()
    for w in range(N_WINDOWS):
        lo, hi = w * WINDOW_S, (w + 1) * WINDOW_S
        overlaps = [(max(0.0, min(b, hi) - max(a, lo)), b - a) for a, b in phrases]
        if sum(o for o, _ in overlaps) >= LABEL_MIN_OVERLAP_S or any(o >= 0.5 * d for o, d in overlaps if o):
            labelled.add(w)
    return labelled


def birds_per_window(events: Iterable[dict[str, Any]]) -> list[str]:
    """The ``birds`` column of each window: labelled events' species, space-separated and sorted, or nocall."""
    birds: list[set[str]] = [set() for _ in range(N_WINDOWS)]
    for ev in events:
        if ev["labelled"]:
            for w in window_labels(ev["phrases"]):
                birds[w].add(ev["species"])
    return [" ".join(sorted(b)) or NOCALL for b in birds]
