"""Analysing one file: stream it through the engine's window pipeline (:mod:`soundscape.pipeline`).

Memory bound per file: one decoded block (at most ``block_s`` seconds and one 2^18-frame read) plus the
tail that the next window still needs (< ``window_s``), one batch of windows and its images, and the
results (``n_windows x (n_labels + embedding dim)`` float32, about 4 KB per 5-second window with 1280-d
embeddings). With the defaults the audio side stays under ~60 MB whatever the file length; a 3-hour file's
results are ~9 MB with embeddings, ~20 KB per label without.

The card's temporal smoothing runs once a file is read, on its whole sequence of window probabilities
(the pipeline's ``finish``), so the result does not depend on ``block_s`` and equals the service's.
"""

from __future__ import annotations

from pathlib import Path

from model_store import ModelStore, VerifiedModel, load_folder
from soundscape.audio import stream
from soundscape.inference import Engine
from soundscape.pipeline import Prediction

from .settings import AnalyzeSettings

__all__ = ["analyze_file", "load_model"]


def load_model(settings: AnalyzeSettings) -> VerifiedModel:
    """The sha256-verified model the settings name: ``model_dir`` or the store's ``name``/``version``.

    Raises:
        StoreError: the model is missing, its card is invalid, or its files' bytes do not match the card.
    """
    if settings.model_dir is None:
        return ModelStore(settings.store).load(settings.name, settings.version)
    return load_folder(settings.model_dir)


def analyze_file(engine: Engine, path: str | Path, settings: AnalyzeSettings) -> Prediction:
    """Stream one file through the engine's pipeline, in bounded memory (see the module docstring).

    Raises:
        AudioError: the file is not usable audio (the code says why; the same as the service's).
    """
    pipe = engine.pipeline(settings.hop_s, settings.batch_size, native_rate=settings.native_rate)
    reader = stream(path, sample_rate=pipe.decode_rate, block_s=settings.block_s)
    with reader:
        return pipe.run(reader, lambda x: engine.run(x, embeddings=settings.embeddings))
