"""Synthetic demo bird-sound dataset in the BirdCLEF layout (tests, benchmarks, the default model).

Example:
    >>> from soundscape.demo import generate_dataset
    >>> root = generate_dataset("demo", seed=0, size="tiny")
"""

from .dataset import LABEL_MIN_OVERLAP_S, SIZES, SizeSpec, generate_dataset
from .species import SPECIES, UNKNOWN_SPECIES, Species

__all__ = ["LABEL_MIN_OVERLAP_S", "SIZES", "SPECIES", "UNKNOWN_SPECIES", "SizeSpec", "Species", "generate_dataset"]
