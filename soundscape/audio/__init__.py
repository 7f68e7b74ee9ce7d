"""The audio front end shared by training, the service and batch analysis.

Decode (any format libsndfile reads) -> resample (soxr) -> fixed windows -> log-mel image. The settings
live in one :class:`FrontendConfig`, saved in every model card. This package imports no torch; the
torchaudio twin of :class:`Frontend` is :mod:`soundscape.audio.transforms` (training only).
"""

from .config import FrontendConfig
from .decode import Audio, AudioInfo, AudioSource, decode, probe, resample, stream
from .errors import AudioError, AudioErrorCode
from .frontend import Frontend, Windows

__all__ = [
    "Audio",
    "AudioError",
    "AudioErrorCode",
    "AudioInfo",
    "AudioSource",
    "Frontend",
    "FrontendConfig",
    "Windows",
    "decode",
    "probe",
    "resample",
    "stream",
]
