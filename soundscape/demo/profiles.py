"""Profiles of the demo dataset: ``clean`` (easy soundscapes, today's data) and ``field`` (what the field sounds like).

Both profiles share the focal clips' recipe (clean focal recordings are what users train on); they differ
in the species table, the sizes and above all the soundscapes:

- ``clean``: isolated calls at -3..+20 dB over the background (RMS of the call's samples against the
  1-12 kHz RMS of the whole minute), no distance, no reverberation, 2-3 nocall windows per minute,
  soundscape species drawn with weights ~ sqrt(clips).
- ``field``: bouts of repeated song (4-20 s) at -6..+12 dB SNR in the 1-11 kHz band against the noise
  bed over the phrases of the bout, heard 10-300 m away through :mod:`soundscape.propagation` (distance
  low-pass, reverberation of the site, RT60 0.3-1.2 s, DRR falling with distance), a much flatter
  species prior (weights ~ clips**0.2) with every known species forced into a labelled soundscape
  (soundscape ``s`` holds species ``s mod n_species``), at most 4 known species per 5 s window, a quiet
  stretch of 3-4 nocall windows per minute, 3 unknown species (one a sound-alike of a known species),
  3 one-clip species, similar pairs 5-10 % apart in pitch, and ``unlabelled/`` soundscapes of the same
  sites without labels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .species import SPECIES, UNKNOWN_SPECIES, Note, Species

__all__ = [
    "FIELD_SIZES",
    "FIELD_SPECIES",
    "FIELD_UNKNOWN_SPECIES",
    "PROFILES",
    "SIZES",
    "Profile",
    "SizeSpec",
]


@dataclass(frozen=True)
class SizeSpec:
    """How much data one size holds.

    Attributes:
        clips_per_species (tuple[int, ...]): focal clips of each species, in the profile's species order
            (a long tail ending with one clip).
        n_soundscapes (int): number of 60 s labelled soundscapes.
        clip_seconds (tuple[float, float]): range of focal clip lengths, seconds.
        n_backgrounds (int): number of background noise files.
        n_unlabelled (int): number of 60 s soundscapes in ``unlabelled/`` (no labels, no events shipped).
    """

    clips_per_species: tuple[int, ...]
    n_soundscapes: int
    clip_seconds: tuple[float, float]
    n_backgrounds: int
    n_unlabelled: int = 0


_SMALL_TAIL = (64, 56, 48, 42, 37, 32, 29, 26, 22, 18, 14, 10, 4, 1)
SIZES: dict[str, SizeSpec] = {
    # tests: 14 species, 50 clips, 3 soundscapes, a few seconds to generate
    "tiny": SizeSpec((7, 6, 5, 5, 4, 4, 4, 3, 3, 3, 2, 2, 1, 1), 3, (3.0, 6.0), 4),
    # the bundled default model: 403 clips, 16 soundscapes
    "small": SizeSpec(_SMALL_TAIL, 16, (3.0, 15.0), 16),
    # benchmarks: "small" plus 100 more one-minute soundscapes
    "bench": SizeSpec(_SMALL_TAIL, 116, (3.0, 15.0), 16),
}
"""Sizes of the ``clean`` profile."""

_FIELD_TAIL = (60, 50, 42, 35, 29, 24, 19, 15, 11, 7, 4, 1, 1, 1)
FIELD_SIZES: dict[str, SizeSpec] = {
    # tests: 42 clips, 3 labelled + 4 unlabelled soundscapes
    "tiny": SizeSpec((6, 5, 5, 4, 4, 3, 3, 3, 2, 2, 2, 1, 1, 1), 3, (3.0, 6.0), 4, n_unlabelled=4),
    # 299 clips, 16 labelled soundscapes (every species forced into one) + 32 unlabelled (40 took 57.6 s
    # to build on the 2-core dev machine; 32 keeps `--size small` well under a minute)
    "small": SizeSpec(_FIELD_TAIL, 16, (3.0, 15.0), 16, n_unlabelled=32),
    # benchmarks: "small"'s clips with 100 more labelled soundscapes
    "bench": SizeSpec(_FIELD_TAIL, 116, (3.0, 15.0), 16, n_unlabelled=40),
}
"""Sizes of the ``field`` profile."""


def _repitch(species: Species, f_start: float, f_end: float, **note_changes: float) -> Species:
    """``species`` with its one-note phrase moved to ``f_start -> f_end`` Hz (and other note fields)."""
    if len(species.phrase) != 1:
        raise ValueError(f"{species.code} has {len(species.phrase)} notes; only one-note phrases are re-pitched")
    note: Note = dataclasses.replace(species.phrase[0], f_start=f_start, f_end=f_end, **note_changes)
    return dataclasses.replace(species, phrase=(note,))


_BY_CODE = {s.code: s for s in SPECIES}
_FIELD_ORDER = ("silwhi", "coptri", "risfin", "marson", "grabuz", "redchi", "falpip", "emetri", "vibwar",
                "woosot", "lowbuz", "dotchi", "ochowl", "palwhi")
_FIELD_CHANGED = {
    # 7 % above silwhi's 3000 Hz, and last (one clip) while silwhi is the most common: a common/rare pair
    "palwhi": _repitch(_BY_CODE["palwhi"], 3210.0, 3210.0),
    # coptri's band (5200 -> 3800 Hz) times 1.06, a similar trill rate (14/s vs 12/s) and pulse length
    "emetri": _repitch(_BY_CODE["emetri"], 5512.0, 4028.0, rate=14.0, depth=0.03),
}
FIELD_SPECIES: tuple[Species, ...] = tuple(_FIELD_CHANGED.get(c, _BY_CODE[c]) for c in _FIELD_ORDER)
"""The ``field`` profile's species table: :data:`~soundscape.demo.species.SPECIES` re-ordered, two re-pitched."""

FIELD_UNKNOWN_SPECIES: tuple[Species, ...] = (
    *UNKNOWN_SPECIES,
    # a sound-alike of risfin (2200 -> 4800 Hz, 0.45 s): the same rising whistle about 6.8 % higher
    Species("unkfin", "(unknown) Rising Stranger", "Incognita ascendens", "whistle",
            (Note("whistle", 2350.0, 5130.0, 0.45),), phrase_gap=0.9),
)
"""Species heard in ``field`` soundscapes only (never in training, taxonomy or labels)."""


@dataclass(frozen=True)
class Profile:
    """What a profile's dataset holds and how hard its soundscapes are.

    Attributes:
        name (str): ``clean`` or ``field``.
        species (tuple[Species, ...]): known species, in abundance order (``clips_per_species`` order).
        unknown_species (tuple[Species, ...]): heard in soundscapes only, never labelled.
        sizes (dict[str, SizeSpec]): ``tiny``, ``small``, ``bench``.
        snr_db (tuple[float, float]): range of call SNRs, dB (the measure differs: see the module doc).
        prior_exponent (float): soundscape species are drawn with weights ``clips_per_species ** exponent``.
        propagation (bool): field soundscapes (:mod:`soundscape.demo.field`): bouts heard through
            :mod:`soundscape.propagation` at a band SNR; otherwise clean isolated calls.
        rt60_s (tuple[float, float] | None): range of a site's reverberation time, seconds.
        bout_s (tuple[float, float] | None): range of a bout's length (repeated phrases), seconds.
        max_species_per_window (int | None): most known species labelled in one 5 s window.
        quiet_windows (tuple[int, int]): a stretch of this many (inclusive range) windows per soundscape
            where no known species calls.
        force_every_species (bool): labelled soundscape ``s`` always holds species ``s mod n_species``.
        resembles (dict[str, tuple[str, str]]): unknown species code -> (the known species it sounds like,
            how).
        similar_pairs (tuple[tuple[str, str], ...]): known species pairs that sound alike on purpose.
    """

    name: str
    species: tuple[Species, ...]
    unknown_species: tuple[Species, ...]
    sizes: dict[str, SizeSpec]
    snr_db: tuple[float, float]
    prior_exponent: float
    propagation: bool = False
    rt60_s: tuple[float, float] | None = None
    bout_s: tuple[float, float] | None = None
    max_species_per_window: int | None = None
    quiet_windows: tuple[int, int] = (2, 3)
    force_every_species: bool = False
    resembles: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    similar_pairs: tuple[tuple[str, str], ...] = ()

    def prior(self, spec: SizeSpec) -> np.ndarray:
        """Probabilities of drawing each known species into a soundscape (``clips ** prior_exponent``)."""
        counts = np.asarray(spec.clips_per_species, dtype=float)
        # np.sqrt for 0.5 keeps the clean profile's draws bit for bit as they always were
        weights = np.sqrt(counts) if self.prior_exponent == 0.5 else counts**self.prior_exponent
        return weights / weights.sum()


CLEAN = Profile("clean", SPECIES, UNKNOWN_SPECIES, SIZES, snr_db=(-3.0, 20.0), prior_exponent=0.5)
FIELD = Profile(
    "field", FIELD_SPECIES, FIELD_UNKNOWN_SPECIES, FIELD_SIZES, snr_db=(-6.0, 12.0), prior_exponent=0.2,
    propagation=True, rt60_s=(0.3, 1.2), bout_s=(4.0, 20.0), max_species_per_window=4, quiet_windows=(3, 4),
    force_every_species=True,
    resembles={
        "unklau": ("falpip", "high whistles falling 7.2 -> 4.8 kHz in 7 steps vs one whistle falling 7 -> 3.5 kHz"),
        "unkwar": ("vibwar", "a vibrato whistle: 3.8-4.2 kHz +-700 Hz at 12 Hz vs 2.8 kHz +-350 Hz at 28 Hz"),
        "unkfin": ("risfin", "the same rising whistle, higher: 2350 -> 5130 Hz vs 2200 -> 4800 Hz, 0.45 s"),
    },
    similar_pairs=(("silwhi", "palwhi"), ("coptri", "emetri")),
)
PROFILES: dict[str, Profile] = {"clean": CLEAN, "field": FIELD}
