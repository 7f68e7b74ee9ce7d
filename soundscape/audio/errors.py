"""Errors of the audio front end, each with a stable machine-readable code."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["AudioError", "AudioErrorCode"]


class AudioErrorCode(StrEnum):
    """Stable error codes; the service returns them as ``{"error": code}``."""

    EMPTY = "empty_audio"
    NOT_AUDIO = "not_audio"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TRUNCATED = "truncated_audio"
    CORRUPT = "corrupt_audio"
    NON_FINITE = "non_finite_samples"
    TOO_LONG = "audio_too_long"
    NO_CHANNELS = "no_channels"
    BAD_SAMPLE_RATE = "unsupported_sample_rate"


class AudioError(ValueError):
    """Audio that cannot be used, with a stable ``code`` and a human-readable message.

    Args:
        code (AudioErrorCode): what went wrong, stable across versions.
        message (str): what went wrong, for a person; names the source when known.
    """

    def __init__(self, code: AudioErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
