"""The result options, one set of names and rules for the service and ``soundscape analyze``.

=============  =============================================  ======================  ===================
option         rule                                           service (query)         analyze (CLI)
=============  =============================================  ======================  ===================
``hop_s``      step between window starts, ``1 <= hop <= 60`` ``hop_s``               ``--hop-s``
               s (default: the card's hop)
``threshold``  report probabilities ``>= threshold`` (0-1)    ``threshold`` (none)    ``--threshold`` (0.1;
                                                                                      ``--min-conf``
                                                                                      deprecated)
``top_k``      at most ``k`` labels per window, by falling    ``top_k``               ``--top-k``
               probability (``1 <= k <= 10000``)
``species``    only these label codes (repeat or comma list), ``species``             ``--species``
               every one a label of the model
=============  =============================================  ======================  ===================

Which formats the filters apply to is a rule of the format (:mod:`soundscape.render`): the JSON answer
and the detection formats apply all three; BirdCLEF rows keep every window and every requested species.

Row ids: BirdCLEF's ``<stem>_<int(end_s)>`` (:func:`soundscape.render.row_id`). Window ends step by the
hop, so a hop of at least one second gives every window a different whole second, i.e. unique row ids;
shorter hops are refused everywhere (:data:`MIN_HOP_S`) rather than writing duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from model_store import ModelCard

__all__ = [
    "MAX_HOP_S",
    "MAX_TOP_K",
    "MIN_HOP_S",
    "HopS",
    "ResultOptions",
    "Threshold",
    "TopK",
    "UnknownSpeciesError",
    "parse_species",
]

MIN_HOP_S = 1.0
MAX_HOP_S = 60.0
MAX_TOP_K = 10_000

HOP_DOC = ("Step between window starts in seconds, at least 1 s (default: the model's hop, 5 s). Smaller than "
           "the window gives overlapping windows. A card's smoothing applies when the card's hop is a whole "
           "multiple of it (the answer's `postprocess` says).")
THRESHOLD_DOC = "Only report probabilities >= this (JSON and detections; BirdCLEF rows keep every value)."
TOP_K_DOC = "Only report the k most probable species per window (JSON and detections)."
SPECIES_DOC = "Restrict results to these species codes; repeat the parameter or use a comma list."

HopS = Annotated[float | None, Field(ge=MIN_HOP_S, le=MAX_HOP_S, description=HOP_DOC)]
Threshold = Annotated[float | None, Field(ge=0, le=1, description=THRESHOLD_DOC)]
TopK = Annotated[int | None, Field(ge=1, le=MAX_TOP_K, description=TOP_K_DOC)]


class UnknownSpeciesError(ValueError):
    """Requested species codes that are not labels of the model."""

    def __init__(self, unknown: list[str], card: ModelCard) -> None:
        super().__init__(f"species {unknown} are not labels of {card.name} v{card.version} "
                         f"(labels: {', '.join(card.codes)})")
        self.unknown = unknown


def parse_species(values: Iterable[str] | None) -> tuple[str, ...] | None:
    """``["a", "b,c"]`` -> ``("a", "b", "c")``: comma lists split, order kept, duplicates dropped; None
    when nothing is left."""
    if not values:
        return None
    codes = [c.strip() for v in values for c in v.split(",") if c.strip()]
    return tuple(dict.fromkeys(codes)) or None


class ResultOptions(BaseModel):
    """What a caller asks of one file's results (see the module docstring for the rules)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hop_s: HopS = None
    threshold: Threshold = None
    top_k: TopK = None
    species: tuple[str, ...] | None = Field(None, description=SPECIES_DOC)

    @field_validator("species", mode="before")
    @classmethod
    def _species(cls, value: object) -> object:
        if value is None or isinstance(value, str):
            return parse_species([value] if value else None)
        return parse_species(list(value))  # type: ignore[call-overload]

    def check(self, card: ModelCard) -> None:
        """Raises :class:`UnknownSpeciesError` when a requested species is not one of ``card``'s labels."""
        if self.species:
            known = set(card.codes)
            unknown = [c for c in self.species if c not in known]
            if unknown:
                raise UnknownSpeciesError(unknown, card)
