"""The audio front end shared by training, the service and batch analysis.

Read (any format libsndfile reads, :mod:`.reader`) -> resample (soxr) -> fixed windows -> log-mel image
(:mod:`.frontend`). The settings live in one :class:`FrontendConfig`, saved in every model card. This
package imports no torch; the torchaudio twin of :class:`Frontend` is :mod:`soundscape.audio.transforms`
(training only).

Importing the package (or :mod:`.config`, as ``model_store`` does for the card) loads only pydantic:
the reader (soundfile, soxr) and the front end (scipy) load on first use of a name that needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from soundscape.lazy import lazy_exports

from .config import FrontendConfig
from .errors import AudioError, AudioErrorCode

if TYPE_CHECKING:
    from .frontend import Frontend, Windows
    from .reader import AUDIO_EXTENSIONS, Audio, AudioInfo, AudioSource, AudioStream, decode, probe, resample, stream

__all__ = ["AUDIO_EXTENSIONS", "Audio", "AudioError", "AudioErrorCode", "AudioInfo", "AudioSource", "AudioStream",
           "Frontend", "FrontendConfig", "Windows", "decode", "probe", "resample", "stream"]

_LAZY = {
    **dict.fromkeys(("AUDIO_EXTENSIONS", "Audio", "AudioInfo", "AudioSource", "AudioStream", "decode", "probe",
                     "resample", "stream"), "reader"),
    "Frontend": "frontend",
    "Windows": "frontend",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
