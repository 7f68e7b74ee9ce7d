"""Synthetic bird species: call notes, phrases and the species table of the demo dataset.

A species sings *phrases* (one call, or one song of several syllables) separated by silent gaps. A phrase
is a tuple of :class:`Note` s rendered with numpy: pure whistles (steady, rising, falling, with optional
vibrato), trills (fast repeats of short frequency-modulated pulses), buzzes (band-limited amplitude-
modulated noise) and chips (short broadband clicks). Every bird (every clip) draws its own :class:`Voice`
(pitch, rate and duration factors) and every phrase adds a little more jitter, so no two clips are equal,
while species stay separable: the jitter (about 2 % in pitch) is far below the 12 % between the two most
similar whistlers.

All energy sits between 1 and 12 kHz (harmonics above ``MAX_HARMONIC_HZ`` are dropped), inside the model's
50-14000 Hz front end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.fft
import scipy.special

__all__ = [
    "SPECIES",
    "UNKNOWN_SPECIES",
    "Note",
    "Species",
    "Voice",
    "render_phrase",
    "render_sequence",
]

TWO_PI = 2.0 * np.pi
MAX_HARMONIC_HZ = 12_000.0

NoteKind = Literal["whistle", "trill", "buzz", "chip"]
CallType = Literal["whistle", "trill", "buzz", "chip", "song"]


@dataclass(frozen=True)
class Note:
    """One note (syllable) of a phrase.

    Attributes:
        kind: ``whistle`` (tone gliding from ``f_start`` to ``f_end``, vibrato ``rate`` Hz of ``depth`` Hz),
            ``trill`` (pulses at ``rate`` per second, each ``depth`` seconds long and sweeping
            ``f_start`` -> ``f_end``), ``buzz`` (noise between ``f_start`` and ``f_end``, amplitude-
            modulated at ``rate`` Hz) or ``chip`` (a click sweeping ``f_start`` -> ``f_end`` in ``dur``).
        f_start (float): start frequency (buzz: lower band edge), Hz.
        f_end (float): end frequency (buzz: upper band edge), Hz.
        dur (float): length, seconds.
        rate (float): vibrato / pulse / AM rate, Hz.
        depth (float): vibrato depth in Hz (whistle) or pulse length in seconds (trill).
        harmonics (tuple[float, ...]): relative amplitudes of harmonics 1, 2, 3, ...
        gap (float): silence after the note inside the phrase, seconds.
        level_db (float): level of the note relative to the phrase, dB.
    """

    kind: NoteKind
    f_start: float
    f_end: float
    dur: float
    rate: float = 0.0
    depth: float = 0.0
    harmonics: tuple[float, ...] = (1.0, 0.15, 0.04)
    gap: float = 0.04
    level_db: float = 0.0


@dataclass(frozen=True)
class Species:
    """A synthetic species.

    Attributes:
        code (str): eBird-like 6-letter code, e.g. ``silwhi``.
        common_name (str): invented English name.
        scientific_name (str): invented binomial.
        call_type (str): ``whistle``, ``trill``, ``buzz``, ``chip`` or ``song``.
        phrase (tuple[Note, ...]): the notes of one phrase.
        phrase_gap (float): typical silence between phrases, seconds.
        drop_tail (int): up to this many final notes may be left out of a phrase (song variation).
    """

    code: str
    common_name: str
    scientific_name: str
    call_type: CallType
    phrase: tuple[Note, ...]
    phrase_gap: float
    drop_tail: int = 0


@dataclass(frozen=True)
class Voice:
    """One bird's individual variation: multiplies pitch, rate (pulses, vibrato, tempo) and durations."""

    pitch: float = 1.0
    rate: float = 1.0
    dur: float = 1.0

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Voice:
        """A random individual: about 2 % pitch, 7 % rate and 8 % duration spread (log-normal)."""
        p, r, d = rng.normal(0.0, (0.02, 0.07, 0.08))
        return cls(pitch=float(np.exp(p)), rate=float(np.exp(r)), dur=float(np.exp(d)))


def _ramp(n: int, ramp: int) -> np.ndarray:
    """Raised-cosine attack and release of ``ramp`` samples on ``n`` ones."""
    env = np.ones(n)
    ramp = min(ramp, n // 2)
    if ramp > 0:
        edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        env[:ramp] = edge
        env[n - ramp:] = edge[::-1]
    return env


def _tone(freq: np.ndarray, sample_rate: int, harmonics: tuple[float, ...], phase0: float) -> np.ndarray:
    """Harmonic tone following the instantaneous frequency ``freq`` ``(n,)``; harmonics stay in band."""
    phase = TWO_PI * np.cumsum(freq) / sample_rate + phase0
    top = float(freq.max()) if len(freq) else 0.0
    limit = min(0.45 * sample_rate, MAX_HARMONIC_HZ)
    out = np.zeros(len(freq))
    for k, amp in enumerate(harmonics, start=1):
        if amp and (k == 1 or k * top < limit):
            out += amp * np.sin(k * phase)
    return out


def _band_noise(rng: np.random.Generator, n: int, sample_rate: int, lo: float, hi: float) -> np.ndarray:
    """White noise restricted to ``[lo, hi]`` Hz (soft edges), unit RMS, ``(n,)``."""
    m = scipy.fft.next_fast_len(n, real=True)  # odd lengths make pocketfft several times slower
    z = rng.standard_normal((m // 2 + 1, 2))  # white noise's spectrum, drawn directly
    spec = z[:, 0] + 1j * z[:, 1]
    f = np.fft.rfftfreq(m, 1.0 / sample_rate)
    width = max(0.08 * (hi - lo), 50.0)
    gain = scipy.special.expit((f - lo) / width * 4) * scipy.special.expit((hi - f) / width * 4)
    out = scipy.fft.irfft(spec * gain, m)[:n]
    return out / (np.sqrt(np.mean(out**2)) + 1e-12)


def _render_note(note: Note, rng: np.random.Generator, sample_rate: int, voice: Voice) -> np.ndarray:
    """One note with per-note jitter (1 % pitch, 5 % duration), peak about ``10**(level_db/20)``."""
    pitch = voice.pitch * float(np.exp(rng.normal(0.0, 0.01)))
    dur = note.dur * voice.dur * float(np.exp(rng.normal(0.0, 0.05)))
    n = max(int(dur * sample_rate), 16)
    t = np.arange(n) / sample_rate
    f0, f1 = note.f_start * pitch, note.f_end * pitch
    phase0 = float(rng.uniform(0, TWO_PI))
    if note.kind == "whistle":
        freq = f0 * (f1 / f0) ** (t / dur)  # exponential glide: equal steps on a log (mel-like) axis
        if note.rate and note.depth:
            freq = freq + note.depth * np.sin(TWO_PI * note.rate * voice.rate * t + phase0)
        y = _tone(freq, sample_rate, note.harmonics, phase0) * _ramp(n, int(0.012 * sample_rate))
    elif note.kind == "trill":
        rate = note.rate * voice.rate
        duty = min(note.depth * rate, 0.9)
        # the pulse rate drifts a little within the trill, as in real birds
        inst = rate * (1.0 + 0.04 * np.sin(TWO_PI * 0.7 * t + phase0))
        cycle = np.cumsum(inst) / sample_rate
        u = (cycle - np.floor(cycle)) / duty
        on = u < 1.0
        freq = np.where(on, f0 + (f1 - f0) * np.clip(u, 0, 1), f1)
        env = np.where(on, np.sin(np.pi * np.clip(u, 0, 1)) ** 2, 0.0)
        y = _tone(freq, sample_rate, note.harmonics, phase0) * env * _ramp(n, int(0.02 * sample_rate))
    elif note.kind == "buzz":
        am = 0.55 + 0.45 * np.sin(TWO_PI * note.rate * voice.rate * t + phase0)
        y = 0.5 * _band_noise(rng, n, sample_rate, f0, f1) * am * _ramp(n, int(0.02 * sample_rate))
    elif note.kind == "chip":
        freq = f0 * (f1 / f0) ** (t / dur)
        decay = np.exp(-t / (0.3 * dur)) * (1.0 - np.exp(-t / 0.0008))
        click = _tone(freq, sample_rate, note.harmonics, phase0)
        click += 0.35 * _band_noise(rng, n, sample_rate, 2000.0, min(10000.0, 0.45 * sample_rate))
        y = click * decay
    else:  # pragma: no cover - Note.kind is a Literal
        raise ValueError(f"unknown note kind {note.kind!r}")
    return y * 10 ** (note.level_db / 20)


def render_phrase(species: Species, rng: np.random.Generator, sample_rate: int, voice: Voice) -> np.ndarray:
    """One phrase (call or song) of ``species``.

    Args:
        species (Species): who sings.
        rng (np.random.Generator): randomness of this phrase.
        sample_rate (int): output rate, Hz.
        voice (Voice): the individual's variation.

    Returns:
        np.ndarray: ``(n,)`` float64, peak about 1.
    """
    notes = species.phrase
    if species.drop_tail:
        notes = notes[: len(notes) - int(rng.integers(0, species.drop_tail + 1))]
    parts = []
    for note in notes:
        parts.append(_render_note(note, rng, sample_rate, voice))
        gap = note.gap * voice.dur * float(np.exp(rng.normal(0.0, 0.1)))
        parts.append(np.zeros(int(gap * sample_rate)))
    out = np.concatenate(parts[:-1]) if len(parts) > 1 else parts[0]
    return out / (np.abs(out).max() + 1e-12)


def render_sequence(species: Species, rng: np.random.Generator, sample_rate: int, duration: float,
                    voice: Voice, *, first_at: float = 0.0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Phrases of one bird, repeated with natural gaps, filling up to ``duration`` seconds.

    At least one phrase is always rendered (cut to ``duration`` with a short fade if it is longer).

    Args:
        species (Species): who sings.
        rng (np.random.Generator): randomness of the sequence.
        sample_rate (int): output rate, Hz.
        duration (float): length of the output, seconds.
        voice (Voice): the individual's variation.
        first_at (float): start of the first phrase, seconds.

    Returns:
        tuple: ``(n,)`` float64 audio of ``round(duration * sample_rate)`` samples, and the
        ``(start_s, end_s)`` of every phrase.
    """
    n = int(round(duration * sample_rate))
    out = np.zeros(n)
    spans: list[tuple[float, float]] = []
    t = first_at
    while True:
        phrase = render_phrase(species, rng, sample_rate, voice)
        start = int(round(t * sample_rate))
        if start >= n or (spans and start + len(phrase) > n):
            break
        if start + len(phrase) > n:  # only the first phrase can be cut: fade it out instead of a click
            phrase = phrase[: n - start] * _ramp(n - start, min(64, (n - start) // 2))
        level = 10 ** (rng.normal(0.0, 1.5) / 20)  # +-1.5 dB from phrase to phrase
        out[start:start + len(phrase)] += level * phrase
        spans.append((start / sample_rate, (start + len(phrase)) / sample_rate))
        gap = species.phrase_gap / voice.rate * float(np.exp(rng.normal(0.0, 0.25)))
        t = spans[-1][1] + gap
    return out, spans


def _w(f0: float, f1: float, dur: float, **kw: object) -> Note:
    return Note("whistle", f0, f1, dur, **kw)  # type: ignore[arg-type]


def _t(f0: float, f1: float, dur: float, rate: float, pulse: float, **kw: object) -> Note:
    return Note("trill", f0, f1, dur, rate=rate, depth=pulse, **kw)  # type: ignore[arg-type]


def _b(lo: float, hi: float, dur: float, am: float, **kw: object) -> Note:
    return Note("buzz", lo, hi, dur, rate=am, **kw)  # type: ignore[arg-type]


def _c(f0: float, f1: float, dur: float, **kw: object) -> Note:
    return Note("chip", f0, f1, dur, harmonics=(1.0, 0.3), **kw)  # type: ignore[arg-type]


# Ordered by abundance: the dataset sizes give the first species the most clips (the long tail ends with
# one clip). Similar pairs on purpose: silwhi/palwhi (steady whistles 12 % apart), coptri/emetri (same
# band, trill rate 12/s vs 22/s), redchi/dotchi (chips), marson/woosot (multi-syllable songs).
SPECIES: tuple[Species, ...] = (
    Species("silwhi", "Silver Whistler", "Sibilator argenteus", "whistle",
            (_w(3000, 3000, 0.70, harmonics=(1.0, 0.25, 0.08)),), phrase_gap=1.2),
    Species("coptri", "Copper Triller", "Trillops cupreus", "trill",
            (_t(5200, 3800, 1.8, rate=12, pulse=0.035),), phrase_gap=1.5),
    Species("risfin", "Rising Finchlet", "Ascendia minor", "whistle",
            (_w(2200, 4800, 0.45),), phrase_gap=0.9),
    Species("marson", "Marsh Songlark", "Paludicantor varius", "song",
            (_w(2500, 4000, 0.25), _w(6000, 6000, 0.06, gap=0.05), _w(6000, 6000, 0.06, gap=0.05),
             _w(6000, 6000, 0.06), _t(4200, 3000, 0.6, rate=16, pulse=0.03), _w(5000, 2500, 0.3)),
            phrase_gap=2.0, drop_tail=2),
    Species("grabuz", "Gray Buzzwing", "Susurrus cinereus", "buzz",
            (_b(6500, 9500, 1.0, am=90),), phrase_gap=1.5),
    Species("palwhi", "Pale Whistler", "Sibilator pallidus", "whistle",
            (_w(3380, 3380, 0.70, harmonics=(1.0, 0.25, 0.08)),), phrase_gap=1.2),
    Species("redchi", "Red Chipper", "Crepitus ruber", "chip",
            (_c(9000, 4000, 0.012, gap=0.12), _c(9000, 4000, 0.012, gap=0.10), _c(9000, 4000, 0.012)),
            phrase_gap=0.6, drop_tail=2),
    Species("falpip", "Falling Pipit", "Cadentia pipiens", "whistle",
            (_w(7000, 3500, 0.35),), phrase_gap=0.7),
    Species("emetri", "Emerald Triller", "Trillops smaragdinus", "trill",
            (_t(5400, 4000, 1.6, rate=22, pulse=0.022),), phrase_gap=1.5),
    Species("vibwar", "Vibrato Warbler", "Tremulus cantans", "whistle",
            (_w(2800, 2800, 1.0, rate=28, depth=350),), phrase_gap=1.4),
    Species("woosot", "Woodland Songthrush", "Silvicantor duplex", "song",
            (_w(4500, 4500, 0.15, gap=0.03), _w(3000, 2800, 0.22, gap=0.12),
             _w(4500, 4500, 0.15, gap=0.03), _w(3000, 2800, 0.22, gap=0.12),
             _t(7000, 5500, 0.35, rate=30, pulse=0.015)),
            phrase_gap=1.8, drop_tail=3),
    Species("lowbuz", "Lowland Buzzbill", "Susurrus campestris", "buzz",
            (_b(2000, 3500, 0.6, am=40),), phrase_gap=1.0),
    Species("dotchi", "Dotted Chiplet", "Crepitus punctatus", "chip",
            (_c(6000, 2500, 0.020, gap=0.05), _c(7000, 3000, 0.015)), phrase_gap=0.9),
    Species("ochowl", "Ochre Owlet", "Glaucidula ochracea", "whistle",
            (_w(1250, 1150, 0.45, harmonics=(1.0, 0.5, 0.3, 0.15), gap=0.35),
             _w(1250, 1150, 0.45, harmonics=(1.0, 0.5, 0.3, 0.15))), phrase_gap=2.5),
)

# Heard in the soundscapes only: not in training, not in the taxonomy, never labelled.
UNKNOWN_SPECIES: tuple[Species, ...] = (
    Species("unklau", "(unknown) Laughing Stranger", "Incognita ridens", "song",
            tuple(_w(7200 - 350 * i, 6900 - 350 * i, 0.08, gap=0.06) for i in range(7)), phrase_gap=2.0),
    Species("unkwar", "(unknown) Warbling Stranger", "Incognita tremula", "whistle",
            (_w(3800, 4200, 0.8, rate=12, depth=700),), phrase_gap=1.6),
)
