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
``species``    only these labels (repeat or comma list), each ``species``             ``--species``,
               a code, common name, scientific name or                                ``--species-list``
               BirdNET's ``Scientific_Common`` (any case)                             FILE (one a line)
=============  =============================================  ======================  ===================

Which formats the filters apply to is a rule of the format (:mod:`soundscape.render`): the JSON answer
and the detection formats apply all three; BirdCLEF rows keep every window and every requested species.

Row ids: BirdCLEF's ``<stem>_<int(end_s)>`` (:func:`soundscape.render.row_id`). Window ends step by the
hop, so a hop of at least one second gives every window a different whole second, i.e. unique row ids;
shorter hops are refused everywhere (:data:`MIN_HOP_S`) rather than writing duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
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
    "read_species_list",
    "resolve_species",
]

MIN_HOP_S = 1.0
MAX_HOP_S = 60.0
MAX_TOP_K = 10_000

HOP_DOC = ("Step between window starts in seconds, at least 1 s (default: the model's hop, 5 s). Smaller than "
           "the window gives overlapping windows. A card's smoothing applies when the card's hop is a whole "
           "multiple of it (the answer's `postprocess` says).")
THRESHOLD_DOC = "Only report probabilities >= this (JSON and detections; BirdCLEF rows keep every value)."
TOP_K_DOC = "Only report the k most probable species per window (JSON and detections)."
SPECIES_DOC = ("Restrict results to these species, in this order: codes, common names or scientific names (any "
               "case; BirdNET's `Scientific name_Common name` too); repeat the parameter or use a comma list.")

HopS = Annotated[float | None, Field(ge=MIN_HOP_S, le=MAX_HOP_S, description=HOP_DOC)]
Threshold = Annotated[float | None, Field(ge=0, le=1, description=THRESHOLD_DOC)]
TopK = Annotated[int | None, Field(ge=1, le=MAX_TOP_K, description=TOP_K_DOC)]


class UnknownSpeciesError(ValueError):
    """Requested species codes that are not labels of the model."""

    def __init__(self, unknown: list[str], card: ModelCard) -> None:
        super().__init__(f"species {unknown} are not labels of {card.name} v{card.version} "
                         f"(labels: {', '.join(card.codes)})")
        self.unknown = unknown


def _species_names(card: ModelCard) -> dict[str, str]:
    """Every accepted name of every label, lower-cased -> its code (the first label wins a shared name)."""
    names: dict[str, str] = {}
    for lab in card.labels:
        for name in (lab.code, lab.common_name, lab.scientific_name, f"{lab.scientific_name}_{lab.common_name}"):
            if name and name != "_":
                names.setdefault(name.casefold(), lab.code)
    return names


def resolve_species(entries: Iterable[str], card: ModelCard) -> tuple[str, ...]:
    """Label codes of ``entries`` (codes, common or scientific names, BirdNET's ``Scientific_Common``; any
    case), in order, duplicates dropped.

    Raises:
        UnknownSpeciesError: entries that name no label of ``card``.
    """
    codes = set(card.codes)
    names = _species_names(card)
    found, unknown = [], []
    for entry in entries:
        code = entry if entry in codes else names.get(entry.strip().casefold())
        (found if code else unknown).append(code or entry)
    if unknown:
        raise UnknownSpeciesError(unknown, card)
    return tuple(dict.fromkeys(found))


def read_species_list(path: str | Path) -> list[str]:
    """A species-list file (BirdNET's ``--slist``): one code or name per line; blank lines and ``#`` comments
    are skipped.

    Raises:
        ValueError: the file cannot be read or lists nothing.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"species list {path}: cannot read it ({exc})") from None
    entries = [line.split("#", 1)[0].strip() for line in lines]
    entries = [e for e in entries if e]
    if not entries:
        raise ValueError(f"species list {path}: lists no species (one code or name per line)")
    return entries


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
        """Raises :class:`UnknownSpeciesError` when a requested species names none of ``card``'s labels."""
        self.for_card(card)

    def for_card(self, card: ModelCard) -> ResultOptions:
        """These options with ``species`` as ``card``'s label codes (names resolved by :func:`resolve_species`).

        Raises:
            UnknownSpeciesError: a requested species names none of the labels.
        """
        if not self.species:
            return self
        codes = resolve_species(self.species, card)
        return self if codes == self.species else self.model_copy(update={"species": codes})
