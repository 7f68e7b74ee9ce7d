"""The typed settings of one batch-analysis run (built by the CLI, or directly in Python)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from model_store import DEFAULT_MODEL_NAME, serving_store_path
from soundscape import available_cpus
from soundscape.options import SPECIES_DOC, HopS, ResultOptions, Threshold, TopK, parse_species, read_species_list

__all__ = ["FORMATS", "AnalyzeSettings", "OutputFormat"]

OutputFormat = Literal["csv", "parquet", "birdclef", "raven", "audacity", "kaleidoscope", "json"]
FORMATS: tuple[str, ...] = ("csv", "parquet", "birdclef", "raven", "audacity", "kaleidoscope", "json")


class AnalyzeSettings(BaseModel):
    """Everything one ``soundscape analyze`` run is told; frozen once built.

    Only the fields in :meth:`result_options` change what is written for a file, so only they (with the
    file's identity and the model's) key the journal: changing ``workers`` or ``engine`` does not redo
    finished files.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    inputs: list[str] = Field(..., min_length=1, description="Files, folders (walked recursively) or globs.")
    out: Path = Field(..., description="Output folder (created).")
    store: Path = Field(default_factory=lambda: serving_store_path(DEFAULT_MODEL_NAME),
                        description="Model store root (default: the user store when it has a production version of "
                                    "`name`, else the bundled store).")
    name: str = Field(DEFAULT_MODEL_NAME, description="Model name in the store.")
    version: int | None = Field(None, ge=1, description="Model version (default: production).")
    model_dir: Path | None = Field(None, description="A version folder (card.json + its model file) instead "
                                                     "of the store.")
    hop_s: HopS = None
    threshold: Threshold = Field(0.1, description="Report probabilities >= this: detections and JSON (the "
                                 "service's `threshold`; `min_conf` is its deprecated name).")
    species: list[str] | None = Field(None, description=SPECIES_DOC)
    species_list: Path | None = Field(None, description="A file of species, one code or name per line (BirdNET's "
                                      "--slist; `#` comments): joined to `species`.")
    top_k: TopK = None
    formats: list[OutputFormat] = Field(default_factory=lambda: ["csv"], min_length=1)
    combine: bool = Field(False, description="Also write one table for the whole run per table format "
                          "(OUT/combined.<suffix>: csv, parquet, raven, kaleidoscope; BirdCLEF's is always "
                          "OUT/submission.csv).")
    embeddings: bool = Field(False, description="Also write per-window embeddings to Parquet.")
    engine: Literal["local", "ray"] = Field("local")
    workers: int = Field(default_factory=available_cpus, ge=1, le=1024, description="Worker processes / Ray actors.")
    address: str | None = Field(None, description="Ray cluster address (default: start a local Ray).")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local Ray instance.")
    resume: bool = Field(True, description="Skip files the journal lists as finished.")
    block_s: float = Field(60.0, gt=0, le=3600, description="Longest block of decoded audio, in seconds (the file "
                           "is read 2^18 frames at a time; results do not depend on it).")
    batch_size: int = Field(32, ge=1, le=4096, description="Windows per model run.")
    native_rate: bool = Field(False, description="Mel models: decode a file at its own rate and compute the "
                              "log-mel images there when the card's front end scales to it exactly (48/64/96 kHz "
                              "for the default 32 kHz card; no resampling: ~6 ms less CPU per minute of 48 kHz "
                              "audio; images within ~1e-4 dB of the resampled ones but at window edges); false: "
                              "always resample to the card's rate (the service's native_rate_mel).")

    @model_validator(mode="before")
    @classmethod
    def _serving_store(cls, data: Any) -> Any:
        """No store given: the one that serves ``name`` (:func:`model_store.serving_store_path`)."""
        if isinstance(data, dict) and data.get("store") is None:
            data = {**data, "store": serving_store_path(str(data.get("name") or DEFAULT_MODEL_NAME))}
        return data

    @model_validator(mode="before")
    @classmethod
    def _min_conf(cls, data: Any) -> Any:
        """``min_conf`` (the old name of ``threshold``) still works, with a DeprecationWarning."""
        if isinstance(data, dict) and "min_conf" in data:
            data = dict(data)
            value = data.pop("min_conf")
            if "threshold" in data and data["threshold"] != value:
                raise ValueError("min_conf is the deprecated name of threshold: give one of them")
            warnings.warn("min_conf is deprecated: use threshold (the service's name)", DeprecationWarning,
                          stacklevel=2)
            data["threshold"] = value
        return data

    @field_validator("formats")
    @classmethod
    def _unique_formats(cls, formats: list[str]) -> list[str]:
        return list(dict.fromkeys(formats))

    @field_validator("species")
    @classmethod
    def _species(cls, species: list[str] | None) -> list[str] | None:
        if species is not None and not parse_species(species):
            raise ValueError("species=[] selects nothing; leave it unset to report every label")
        return list(parse_species(species)) if species is not None else None

    @model_validator(mode="after")
    def _check(self) -> AnalyzeSettings:
        if self.model_dir is not None and self.version is not None:
            raise ValueError(f"version={self.version} and model_dir={self.model_dir} are exclusive")
        return self

    @property
    def min_conf(self) -> float | None:
        """Deprecated name of :attr:`threshold`."""
        return self.threshold

    def requested_species(self) -> list[str] | None:
        """``species`` then the entries of ``species_list`` (not yet resolved against a model's labels).

        Raises:
            ValueError: the species list cannot be read or is empty.
        """
        listed = read_species_list(self.species_list) if self.species_list is not None else []
        return [*(self.species or []), *listed] or None

    def options(self) -> ResultOptions:
        """The run's result options, as the service takes them."""
        return ResultOptions(hop_s=self.hop_s, threshold=self.threshold, top_k=self.top_k, species=self.species)

    def result_options(self) -> dict:
        """The options that change a file's outputs (part of its journal key)."""
        return {
            "hop_s": self.hop_s,
            "threshold": self.threshold,
            "species": self.species,  # in the order asked: the order of the BirdCLEF columns
            "top_k": self.top_k,
            "formats": sorted(self.formats),
            "embeddings": self.embeddings,
            # only when on, so that journals written before the setting existed still match
            **({"native_rate": True} if self.native_rate else {}),
        }
