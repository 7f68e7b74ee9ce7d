"""Synthetic demo bird-sound dataset in the BirdCLEF layout (tests, benchmarks, the default model).

Two profiles: ``clean`` (isolated calls over the background; the default) and ``field`` (bouts of song
heard at a distance in reverberant sites: see :mod:`soundscape.demo.profiles`).

Example:
    >>> from soundscape.demo import generate_dataset
    >>> root = generate_dataset("demo", seed=0, size="tiny")
    >>> field = generate_dataset("field", seed=0, size="tiny", profile="field")
"""

from .dataset import LABEL_MIN_OVERLAP_S, SIZES, SizeSpec, generate_dataset
from .profiles import FIELD_SIZES, FIELD_SPECIES, FIELD_UNKNOWN_SPECIES, PROFILES, Profile
from .species import SPECIES, UNKNOWN_SPECIES, Species

__all__ = [
    "FIELD_SIZES",
    "FIELD_SPECIES",
    "FIELD_UNKNOWN_SPECIES",
    "LABEL_MIN_OVERLAP_S",
    "PROFILES",
    "SIZES",
    "SPECIES",
    "UNKNOWN_SPECIES",
    "Profile",
    "SizeSpec",
    "Species",
    "generate_dataset",
]
