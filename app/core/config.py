"""The service's settings: one typed, validated object read from ``SOUNDSCAPE_*`` variables or ``.env``.

Reach them only through :func:`get_settings` (cached), never through a module global, so tests and the
CLI can build their own :class:`Settings` and hand it to :func:`app.main.create_app`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model_store import DEFAULT_MODEL_NAME, serving_store_path
from soundscape import available_cpus
from soundscape.options import MIN_HOP_S

__all__ = ["Settings", "get_settings"]

_MiB = 1024 * 1024


class Settings(BaseSettings):
    """Everything the service can be told, with safe defaults.

    Every field can be set with an environment variable ``SOUNDSCAPE_<FIELD>`` (e.g.
    ``SOUNDSCAPE_STORE_PATH=/models``) or in a ``.env`` file; ``soundscape serve`` options override both.
    """

    model_config = SettingsConfigDict(env_prefix="SOUNDSCAPE_", env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore", frozen=True)

    # -- model -----------------------------------------------------------------------------------
    store_path: Path = Field(
        default_factory=lambda: serving_store_path(DEFAULT_MODEL_NAME),
        description="Root of the model store (default: the user store when it has a production version of "
                    "model_name, else the bundled store; see model_store.locations).")
    model_name: str = Field(DEFAULT_MODEL_NAME, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
                            description="Name of the model to serve from the store.")
    require_model: bool = Field(
        True, description="Fail start-up when no good model can be loaded; when false the service starts "
                          "unready (503 no_model) and an admin reload can load one later.")

    # -- network ---------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", min_length=1, description="Interface uvicorn binds to.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port.")
    graceful_shutdown_s: float = Field(30.0, gt=0, le=600,
                                       description="Seconds to let in-flight requests finish on SIGTERM.")

    # -- limits ----------------------------------------------------------------------------------
    max_upload_bytes: int = Field(64 * _MiB, ge=1024, description="Largest accepted audio file, in bytes.")
    max_duration_s: float = Field(1800.0, gt=0, le=24 * 3600,
                                  description="Longest accepted recording, in seconds (checked from the header).")
    min_hop_s: float = Field(MIN_HOP_S, ge=MIN_HOP_S, le=60,
                             description="Smallest hop_s a client may ask for (never under 1 s, the shared rule: "
                                         "shorter hops would repeat BirdCLEF row ids).")
    max_batch_files: int = Field(16, ge=1, le=1000, description="Most files in one /v1/predict/batch request.")
    max_concurrent_requests: int = Field(
        64, ge=1, le=100_000,
        description="Prediction requests processed at once; more get 503 + Retry-After.")
    max_queue_windows: int = Field(
        4096, ge=1, description="Windows waiting for the model; a request that would exceed it gets 503.")
    retry_after_s: int = Field(1, ge=1, le=3600, description="Retry-After seconds sent with 503 answers.")
    spool_threshold_bytes: int = Field(
        1 * _MiB, ge=0, description="Uploads larger than this are spooled to a temporary file, not kept in RAM.")

    # -- slow and vanishing clients (see README "Operating it") -----------------------------------
    header_timeout_s: float = Field(
        10.0, gt=0, le=3600,
        description="A connection must send a request's whole header within this many seconds of opening (or of "
                    "its first byte on a kept-alive connection); otherwise it is closed.")
    body_idle_timeout_s: float = Field(
        30.0, gt=0, le=3600,
        description="Longest silence while an upload's body is read; past it: 408 upload_timeout, connection closed.")
    body_timeout_s: float = Field(
        900.0, gt=0, le=24 * 3600,
        description="Longest time to read one request's whole body; past it: 408 upload_timeout.")
    max_uploads_in_progress: int = Field(
        256, ge=1, le=100_000,
        description="Uploads being received at once (admission to max_concurrent_requests comes after the body "
                    "has arrived); more get 503 too_busy + Retry-After.")
    max_uploads_per_client: int = Field(
        16, ge=0, le=100_000,
        description="Uploads being received at once from one client address (0: no limit, e.g. behind a proxy "
                    "that limits them); more get 429 too_many_uploads + Retry-After.")

    # -- the web page (GET /) and its endpoints (/v1/review) -------------------------------------
    review_ttl_s: float = Field(
        900.0, ge=10, le=24 * 3600,
        description="Seconds a reviewed upload's result stays downloadable (/v1/review/{id}/download).")
    review_cache_mb: float = Field(
        256.0, ge=1, le=1_000_000,
        description="Memory kept for reviewed results (probabilities), in MB; the oldest are dropped first.")
    spectrogram_max_columns: int = Field(
        4096, ge=256, le=65536,
        description="Widest spectrogram sent to the page, in columns; longer recordings are max-pooled in time.")

    # -- compute ---------------------------------------------------------------------------------
    # Tuned in bench/bench_service.py on 2 cores: one thread per run and one run per core beats
    # multi-threaded runs (no spinning ORT pool stealing the decode threads' CPU); 12 windows (one
    # minute) per run keeps fp32 activations, hence RSS, near 500 MB.
    intra_op_threads: int = Field(1, ge=1, le=256, description="Threads inside one model run (ONNX Runtime intra-op; "
                                  "LiteRT: per interpreter).")
    inter_op_threads: int = Field(1, ge=1, le=256, description="ONNX Runtime threads across graph nodes.")
    memory_arena: bool = Field(True, description="ONNX Runtime's CPU memory arena: activations kept between runs "
                               "(faster, memory held at its peak) or allocated and freed with each run.")
    memory_pattern: bool = Field(False, description="ONNX Runtime's memory plans: one block for a run's activations "
                                 "kept per batch size (off: the arena reuses its blocks across batch sizes; less RSS).")
    malloc_arena_max: int = Field(2, ge=0, le=1024, description="Cap on glibc's malloc arenas (0: glibc's default of "
                                  "8 per core; MALLOC_ARENA_MAX in the environment wins). Fewer: less RSS.")
    fft_workers: int = Field(1, ge=1, le=256, description="FFT threads of the front end per call.")
    native_rate_mel: bool = Field(
        False, description="Mel models: decode an upload at its own sample rate and compute the log-mel images "
                           "there when the card's front end scales to it exactly (48/64/96 kHz for the default "
                           "32 kHz card: FFT size and hop times rate/card rate), skipping the resampler (~6 ms "
                           "less CPU per minute of 48 kHz audio, but more memory: the samples stay at 48 kHz). "
                           "Measured at concurrency 4 it gave no throughput and 30-45 MB more peak RSS, so it is "
                           "off by default (off: always resample to the card's rate). Images agree with the "
                           "resampled path to ~1e-4 dB except the 2 frames at each window edge; probabilities "
                           "move by about as much as the model's own noise (bundled int8 model: up to ~0.04). "
                           "Other rates (44.1, 22.05 kHz) and waveform models always resample.")
    cpu_workers: int = Field(default_factory=available_cpus, ge=1, le=256,
                             description="Threads that decode audio and compute spectrograms.")
    batch_max_size: int = Field(12, ge=1, le=1024, description="Most windows in one model run.")
    batch_max_wait_ms: float = Field(2.0, ge=0, le=10_000,
                                     description="How long a batch waits for more windows after its first.")
    max_concurrent_batches: int | None = Field(
        None, ge=1, le=256,
        description="Model runs in flight at once. Default: half the cores (at least 1) for log-mel models, whose "
                    "decoding and front end take the rest of the CPU (one run at a time on 2 cores: fp32 16.3 "
                    "against 15.9 audio-min/s and 330 against 400 MB peak RSS); all the cores for waveform models "
                    "(BirdNET), which spend ~90 % of their time in the model.")

    # -- admin and logging -----------------------------------------------------------------------
    admin_token: SecretStr | None = Field(
        None, description="Bearer token of the /v1/admin endpoints; they answer 404 when unset.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Logging level.")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("admin_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        secret = value.get_secret_value()
        if secret.lower() in {"changethis", "changeme", "secret", "token", "admin"}:
            raise ValueError(f"admin_token {secret!r} is a placeholder: set a real secret")
        if len(secret) < 16:
            raise ValueError(f"admin_token must be at least 16 characters, got {len(secret)}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _serving_store(cls, data: Any) -> Any:
        """No store given: the one that serves ``model_name`` (:func:`model_store.serving_store_path`)."""
        if isinstance(data, dict) and data.get("store_path") is None:
            data = {**data, "store_path": serving_store_path(str(data.get("model_name") or DEFAULT_MODEL_NAME))}
        return data

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.spool_threshold_bytes > self.max_upload_bytes:
            raise ValueError(
                f"spool_threshold_bytes={self.spool_threshold_bytes} exceeds max_upload_bytes={self.max_upload_bytes}"
            )
        return self

    @property
    def admin_enabled(self) -> bool:
        return self.admin_token is not None

    def model_runs(self, model_input: Literal["mel", "waveform"]) -> int:
        """Model runs in flight at once for a model of this input kind: ``max_concurrent_batches`` when set,
        else half the cores for log-mel models and all of them for waveform models (see the field)."""
        if self.max_concurrent_batches is not None:
            return self.max_concurrent_batches
        cpus = available_cpus()
        return max(cpus // 2, 1) if model_input == "mel" else cpus


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment and ``.env``."""
    return Settings()
