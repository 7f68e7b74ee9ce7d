"""Batch analysis of recording archives: ``soundscape analyze``.

Streams each file through the inference engine in bounded memory, writes detections in several formats,
keeps a resumable journal, and runs on a local process pool or on a Ray cluster.
"""

from .core import Detection, FileAnalysis, analyze_file, detections, load_model, stream_windows
from .formats import SUFFIXES, service_json, write_outputs
from .inputs import AUDIO_EXTENSIONS, InputFile, find_inputs
from .journal import Journal, file_key
from .runner import run_analysis
from .settings import FORMATS, AnalyzeSettings

__all__ = [
    "AUDIO_EXTENSIONS",
    "FORMATS",
    "SUFFIXES",
    "AnalyzeSettings",
    "Detection",
    "FileAnalysis",
    "InputFile",
    "Journal",
    "analyze_file",
    "detections",
    "file_key",
    "find_inputs",
    "load_model",
    "run_analysis",
    "service_json",
    "stream_windows",
    "write_outputs",
]
