"""Batch analysis of recording archives: ``soundscape analyze``.

Streams each file through the engine's window pipeline (:mod:`soundscape.pipeline`) in bounded memory,
writes it in the formats of :mod:`soundscape.render` (the service's renderers), keeps a resumable journal,
and runs on a local process pool or on a Ray cluster.
"""

from soundscape.audio.functional import stream_windows

from .core import analyze_file, load_model
from .formats import SUFFIXES, write_outputs
from .inputs import AUDIO_EXTENSIONS, InputFile, find_inputs
from .journal import Journal, file_key
from .runner import run_analysis
from .settings import FORMATS, AnalyzeSettings

__all__ = [
    "AUDIO_EXTENSIONS",
    "FORMATS",
    "SUFFIXES",
    "AnalyzeSettings",
    "InputFile",
    "Journal",
    "analyze_file",
    "file_key",
    "find_inputs",
    "load_model",
    "run_analysis",
    "stream_windows",
    "write_outputs",
]
