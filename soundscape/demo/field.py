"""Field soundscapes of the ``field`` demo profile: bouts of song heard at a distance in a reverberant site.

One soundscape is one *site*: a noise bed (:func:`~soundscape.demo.scene.render_bed`: wind, rain,
insects, hum) with its own reverberation time (RT60 drawn uniformly in the profile's range), and birds
singing *bouts* (one bird repeating its phrase for 4-20 s, :func:`~soundscape.demo.species.render_sequence`).
Each bout is placed at an SNR drawn in -6..+12 dB and heard through :mod:`soundscape.propagation`:
:meth:`~soundscape.propagation.Propagation.draw` ties the distance (10-300 m) to the SNR, which sets the
low-pass and the direct-to-reverberant ratio; :func:`~soundscape.propagation.propagate` applies them; and
:func:`~soundscape.propagation.gain_for_snr` scales the propagated bout so that its power over its
phrases, in the 1-11 kHz band, is ``snr_db`` above the noise bed's (noise only, before any calls) over
the same samples.

Rules of a labelled soundscape ``s`` (``s`` also picks its sample rate, like the clean profile):

- its known species are species ``s mod n_species`` (forced, placed first, so every species of ``small``
  is labelled somewhere) plus 2-5 more drawn with the profile's flat prior, each singing 1-2 bouts; each
  unknown species sings 0-2 bouts anywhere;
- a quiet stretch of 3-4 windows where no known species calls (unknown species may);
- at most ``max_species_per_window`` known species labelled in any 5 s window, and one bird's bouts never
  overlap: a bout whose placement breaks a rule is re-drawn, and given up after ``PLACEMENT_TRIES``.

Unlabelled soundscapes come from the same generator with their own random stream, at 32 kHz.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..propagation import (
    SNR_BAND_HZ,
    Propagation,
    distance_for_snr,
    drr_for_distance,
    gain_for_snr,
    lowpass_cutoff_hz,
    propagate_with_ir,
)
from .noise import NOISE_KINDS
from .profiles import FIELD, Profile, SizeSpec
from .scene import N_WINDOWS, SOUNDSCAPE_RATES, SOUNDSCAPE_S, WINDOW_S, birds_per_window, render_bed, stream
from .scene import window_labels as labelled_windows
from .species import Species, Voice, render_sequence

__all__ = [
    "FieldPlan",
    "FieldScape",
    "PlacedCall",
    "field_conditions",
    "plan_field_soundscape",
    "render_field_soundscape",
]

# streams of numpy.random.default_rng([seed, stream, index]) (the clean profile's are 1-3)
FIELD_SOUNDSCAPE_STREAM, UNLABELLED_STREAM = 4, 5
UNLABELLED_RATE = 32000
KNOWN_PER_SOUNDSCAPE = (3, 6)
BOUTS_PER_KNOWN = (1, 2)
BOUTS_PER_UNKNOWN = (0, 2)
PLACEMENT_TRIES = 20
PEAK = 0.95


@dataclass(frozen=True)
class FieldPlan:
    """What a field soundscape holds, drawn before any audio (the first draws of its random stream).

    Attributes:
        index (int): soundscape number (labelled or unlabelled).
        sample_rate (int): Hz.
        rt60_s (float): the site's reverberation time, seconds.
        quiet_s (tuple[float, float]): the stretch where no known species calls, seconds.
        known (tuple[str, ...]): known species codes, the forced one first.
        bouts (tuple[tuple[Species, bool], ...]): ``(species, labelled)`` of every bout, in placement order.
    """

    index: int
    sample_rate: int
    rt60_s: float
    quiet_s: tuple[float, float]
    known: tuple[str, ...]
    bouts: tuple[tuple[Species, bool], ...]


@dataclass
class PlacedCall:
    """One bout as added to the minute (kept only with ``keep_parts=True``).

    Attributes:
        event (dict): its ``dataset.json`` event.
        offset (int): first sample of ``audio`` in the minute.
        audio (np.ndarray): what was added: the propagated bout times its gain, cut at the minute's end.
        dry (np.ndarray): the bout as sung, before propagation and gain.
        ir (np.ndarray): the impulse response it was heard through.
    """

    event: dict[str, Any]
    offset: int
    audio: np.ndarray
    dry: np.ndarray
    ir: np.ndarray


@dataclass
class FieldScape:
    """A rendered field soundscape.

    ``mix == scale * (bed + sum of every call's audio at its offset)``; ``scale < 1`` only when the sum
    would peak above 0.95.
    """

    plan: FieldPlan
    mix: np.ndarray
    bed: np.ndarray
    scale: float
    noise: list[str]
    events: list[dict[str, Any]]
    dropped: int
    calls: list[PlacedCall] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """The ``birds`` of each 5 s window."""
        return birds_per_window(self.events)

    def info(self) -> dict[str, Any]:
        """The soundscape's entry in ``dataset.json``."""
        return {"sample_rate": self.plan.sample_rate, "noise": self.noise, "rt60_s": round(self.plan.rt60_s, 3),
                "quiet_s": list(self.plan.quiet_s), "dropped_bouts": self.dropped, "events": self.events}


def _plan(rng: np.random.Generator, index: int, sample_rate: int, profile: Profile, spec: SizeSpec) -> FieldPlan:
    assert profile.rt60_s is not None
    rt60 = float(rng.uniform(*profile.rt60_s))
    q_len = int(rng.integers(profile.quiet_windows[0], profile.quiet_windows[1] + 1))
    q0 = float(WINDOW_S * rng.integers(0, N_WINDOWS - q_len + 1))
    n_species = len(profile.species)
    forced = index % n_species if profile.force_every_species else int(rng.integers(n_species))
    others = np.array([k for k in range(n_species) if k != forced])
    p = profile.prior(spec)[others]
    n_known = int(rng.integers(KNOWN_PER_SOUNDSCAPE[0], KNOWN_PER_SOUNDSCAPE[1] + 1))
    known = [forced, *(int(k) for k in rng.choice(others, size=n_known - 1, replace=False, p=p / p.sum()))]
    bouts: list[tuple[Species, bool]] = []
    for k in known:
        bouts += [(profile.species[k], True)] * int(rng.integers(BOUTS_PER_KNOWN[0], BOUTS_PER_KNOWN[1] + 1))
    for sp in profile.unknown_species:
        bouts += [(sp, False)] * int(rng.integers(BOUTS_PER_UNKNOWN[0], BOUTS_PER_UNKNOWN[1] + 1))
    return FieldPlan(index, sample_rate, rt60, (q0, q0 + WINDOW_S * q_len),
                     tuple(profile.species[k].code for k in known), tuple(bouts))


def _start_intervals(dur: float, quiet: tuple[float, float] | None) -> list[tuple[float, float]]:
    """Ranges of start times that keep ``[start, start + dur]`` inside the minute and out of ``quiet``."""
    free = [(0.0, float(SOUNDSCAPE_S))] if quiet is None else [(0.0, quiet[0]), (quiet[1], float(SOUNDSCAPE_S))]
    return [(a, b - dur) for a, b in free if b - a >= dur]


def _draw_start(rng: np.random.Generator, intervals: Sequence[tuple[float, float]]) -> float:
    """A start time uniform over the union of ``intervals``."""
    lengths = [b - a for a, b in intervals]
    u = float(rng.uniform(0.0, float(np.sum(lengths))))
    for (a, _), length in zip(intervals, lengths, strict=True):
        if u <= length:
            return a + u
        u -= length
    return intervals[-1][1]


def _phrase_mask(spans: Sequence[tuple[float, float]], n: int, sample_rate: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    for a, b in spans:
        mask[int(round(a * sample_rate)):int(round(b * sample_rate))] = True
    return mask


class _Site:
    """Places bouts into one minute, enforcing the profile's rules; accumulates the mix."""

    def __init__(self, plan: FieldPlan, profile: Profile, bed: np.ndarray, keep_parts: bool) -> None:
        self.plan, self.profile, self.bed, self.keep_parts = plan, profile, bed, keep_parts
        self.mix = bed.copy()
        self.species_in: list[set[str]] = [set() for _ in range(N_WINDOWS)]
        self.busy: dict[str, list[tuple[float, float]]] = {}
        self.events: list[dict[str, Any]] = []
        self.calls: list[PlacedCall] = []
        self.dropped = 0

    def _fits(self, code: str, labelled: bool, start: float, dur: float, phrases: list[list[float]]) -> bool:
        if any(start < b and a < start + dur for a, b in self.busy.get(code, [])):
            return False  # one bird sings one bout at a time
        limit = self.profile.max_species_per_window
        return not (labelled and limit is not None
                    and any(len(self.species_in[w] | {code}) > limit for w in labelled_windows(phrases)))

    def sing(self, rng: np.random.Generator, species: Species, labelled: bool, voice: Voice) -> None:
        """Render one bout, place it by the rules (or give it up), propagate it and add it at its SNR."""
        sr = self.plan.sample_rate
        assert self.profile.bout_s is not None
        intervals = _start_intervals(0.0, self.plan.quiet_s if labelled else None)
        longest = max(b - a for a, b in intervals)
        dur = min(float(rng.uniform(*self.profile.bout_s)), longest)
        snr_db = float(rng.uniform(*self.profile.snr_db))
        dry, spans = render_sequence(species, rng, sr, dur, voice, first_at=0.0)
        intervals = _start_intervals(dur, self.plan.quiet_s if labelled else None)
        for _ in range(PLACEMENT_TRIES):
            start = _draw_start(rng, intervals)
            phrases = [[round(start + a, 3), round(start + b, 3)] for a, b in spans]
            if self._fits(species.code, labelled, start, dur, phrases):
                break
        else:
            self.dropped += 1
            return
        path = Propagation.draw(snr_db, self.plan.rt60_s, rng)
        wet, ir = propagate_with_ir(dry, sr, path, rng)
        offset = int(round(start * sr))
        m = min(len(wet), len(self.bed) - offset)
        wet = wet[:m]
        gain = gain_for_snr(self.bed[offset:offset + m], wet, snr_db, sr, _phrase_mask(spans, m, sr))
        wet *= gain
        self.mix[offset:offset + m] += wet
        self.busy.setdefault(species.code, []).append((start, start + dur))
        if labelled:
            for w in labelled_windows(phrases):
                self.species_in[w].add(species.code)
        event = {"species": species.code, "labelled": labelled, "start_s": phrases[0][0], "end_s": phrases[-1][1],
                 "bout_s": round(dur, 3), "snr_db": round(snr_db, 2), **path.to_dict(), "phrases": phrases}
        self.events.append(event)
        if self.keep_parts:
            self.calls.append(PlacedCall(event, offset, wet, dry, ir))


def _begin(seed: int, index: int, size: str, unlabelled: bool,
           profile: Profile) -> tuple[np.random.Generator, FieldPlan, SizeSpec]:
    if not profile.propagation:
        raise ValueError(f"profile {profile.name!r} has no field soundscapes")
    if size not in profile.sizes:
        raise ValueError(f"size={size!r} is not one of {sorted(profile.sizes)}")
    spec = profile.sizes[size]
    if unlabelled:
        rng, sr = stream(seed, UNLABELLED_STREAM, index), UNLABELLED_RATE
    else:
        rng, sr = stream(seed, FIELD_SOUNDSCAPE_STREAM, index), SOUNDSCAPE_RATES[index % len(SOUNDSCAPE_RATES)]
    return rng, _plan(rng, index, sr, profile, spec), spec


def plan_field_soundscape(seed: int, index: int, *, size: str = "tiny", unlabelled: bool = False,
                          profile: Profile = FIELD) -> FieldPlan:
    """The plan of a field soundscape (its species, site and quiet stretch) without rendering any audio.

    Args:
        seed (int): the dataset's seed.
        index (int): soundscape number.
        size (str): dataset size (the prior depends on its clip counts). (Default: ``"tiny"``)
        unlabelled (bool): a soundscape of ``unlabelled/`` rather than ``soundscapes/``. (Default: ``False``)
        profile (Profile): a profile with field soundscapes. (Default: ``field``)

    Returns:
        FieldPlan: identical to the plan :func:`render_field_soundscape` renders.
    """
    return _begin(seed, index, size, unlabelled, profile)[1]


def render_field_soundscape(seed: int, index: int, *, size: str = "tiny", unlabelled: bool = False,
                            profile: Profile = FIELD, keep_parts: bool = False) -> FieldScape:
    """Render one field soundscape, as :func:`~soundscape.demo.generate_dataset` writes it.

    Args:
        seed (int): the dataset's seed.
        index (int): soundscape number.
        size (str): dataset size. (Default: ``"tiny"``)
        unlabelled (bool): a soundscape of ``unlabelled/``. (Default: ``False``)
        profile (Profile): a profile with field soundscapes. (Default: ``field``)
        keep_parts (bool): keep every placed call's audio, dry bout and impulse response in
            :attr:`FieldScape.calls` (memory: several arrays per call). (Default: ``False``)

    Returns:
        FieldScape: the minute, its noise bed, events and (optionally) parts.
    """
    rng, plan, _ = _begin(seed, index, size, unlabelled, profile)
    n = SOUNDSCAPE_S * plan.sample_rate
    bed, noise = render_bed(rng, index, n, plan.sample_rate)
    voices = {sp.code: Voice.draw(rng) for sp, _ in plan.bouts}  # one bird per species per soundscape
    site = _Site(plan, profile, bed, keep_parts)
    for species, labelled in plan.bouts:
        site.sing(rng, species, labelled, voices[species.code])
    peak = float(np.abs(site.mix).max())
    scale = PEAK / peak if peak > PEAK else 1.0  # a loud call near the microphone: scale the minute, never clip
    mix = site.mix * scale if scale != 1.0 else site.mix
    return FieldScape(plan, mix, bed, scale, noise, site.events, site.dropped, site.calls)


def _pitch_ratio(low: Species, high: Species) -> float | None:
    """How much higher ``high`` sings than ``low`` when both sing one note of the same kind and contour
    (the geometric mean of the start and end frequency ratios); ``None`` when they differ in shape."""
    if len(low.phrase) != 1 or len(high.phrase) != 1:
        return None
    a, b = low.phrase[0], high.phrase[0]
    if a.kind != b.kind or abs(np.log((b.f_end / b.f_start) / (a.f_end / a.f_start))) > 0.02:
        return None
    return round(float(np.sqrt(b.f_start / a.f_start * b.f_end / a.f_end)), 3)


def field_conditions(profile: Profile, spec: SizeSpec) -> dict[str, Any]:
    """The ``conditions`` object of a field dataset's ``dataset.json``: every condition and its range."""
    assert profile.rt60_s is not None and profile.bout_s is not None
    lo_snr, hi_snr = profile.snr_db
    near, far = distance_for_snr(hi_snr), distance_for_snr(lo_snr)
    by_code = {s.code: s for s in (*profile.species, *profile.unknown_species)}
    one_clip = [s.code for s, c in zip(profile.species, spec.clips_per_species, strict=True) if c == 1]
    return {
        "snr_db": {"range": [lo_snr, hi_snr], "band_hz": list(SNR_BAND_HZ),
                   "measured": "10*log10(P_call / P_bed), both band-passed to the band (4th-order Butterworth, "
                               "zero phase) over the samples of the bout's phrases; bed = the noise only, "
                               "before any calls are added"},
        "distance_m": {"range": [near, far], "rule": "10 * 30 ** ((12 - snr_db) / 18) m, +-15 % jitter, clipped"},
        "lowpass_hz": {"range": [round(lowpass_cutoff_hz(far), 1), round(lowpass_cutoff_hz(near), 1)],
                       "rule": "2nd-order Butterworth at 20 kHz * sqrt(10 / distance_m), clipped to 3.5-20 kHz "
                               "(not applied at or above 0.45 * sample rate)"},
        "rt60_s": {"range": list(profile.rt60_s), "rule": "one per site (soundscape), uniform"},
        "drr_db": {"range": [round(drr_for_distance(far), 2), round(drr_for_distance(near), 2)],
                   "rule": "12 - 13.5 * log10(distance_m / 10)"},
        "bout_s": {"range": list(profile.bout_s), "rule": "one bird repeating its phrase (render_sequence)"},
        "backgrounds": list(NOISE_KINDS),
        "species_prior": {"exponent": profile.prior_exponent, "rule": "weights = clips_per_species ** exponent",
                          "forced": "labelled soundscape s holds species s mod n_species"},
        "known_species_per_soundscape": list(KNOWN_PER_SOUNDSCAPE),
        "bouts_per_known_species": list(BOUTS_PER_KNOWN),
        "bouts_per_unknown_species": list(BOUTS_PER_UNKNOWN),
        "max_species_per_window": profile.max_species_per_window,
        "placement_tries": PLACEMENT_TRIES,
        "quiet_windows": list(profile.quiet_windows),
        "min_nocall_fraction": profile.quiet_windows[0] / N_WINDOWS,
        "unknown_species": {u.code: {"resembles": profile.resembles[u.code][0], "how": profile.resembles[u.code][1],
                                     "pitch_ratio": _pitch_ratio(by_code[profile.resembles[u.code][0]], u)}
                            for u in profile.unknown_species},
        "similar_pairs": [{"species": [a, b], "pitch_ratio": _pitch_ratio(by_code[a], by_code[b])}
                          for a, b in profile.similar_pairs],
        "one_clip_species": one_clip,
        "unlabelled": {"count": spec.n_unlabelled, "sample_rate": UNLABELLED_RATE, "labels": "none",
                       "events": "none"},
    }
