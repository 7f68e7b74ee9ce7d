"""The Python API: ``soundscape.predict`` and ``soundscape.embed``, recordings in, pandas DataFrames out.

The same engine, window pipeline and card postprocessing as the HTTP service and ``soundscape analyze``
(:class:`~soundscape.inference.Engine`, no HTTP), so a file's probabilities here are the service's JSON
numbers for the same options. The frames have OpenSoundscape's shape: indexed by ``(file, start_time,
end_time)`` (seconds), one column per species code (``predict``) or embedding dimension (``embed``); the
model's name and version are in ``df.attrs["model"]``. Needs pandas (the ``[batch]`` extra).

Example:
    >>> import soundscape
    >>> df = soundscape.predict(["site7.wav"], species=["coptri", "Pale Whistler"])  # doctest: +SKIP
    >>> df.loc["site7.wav"].max()                                                     # doctest: +SKIP
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model_store import CARD_FILE, DEFAULT_MODEL_NAME, ModelStore, VerifiedModel, load_folder, serving_store_path
from soundscape.audio import resample, stream
from soundscape.extras import require
from soundscape.inference import Engine
from soundscape.options import ResultOptions, read_species_list, resolve_species
from soundscape.pipeline import Prediction

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["INDEX", "embed", "load_engine", "predict"]

INDEX = ("file", "start_time", "end_time")
Recording = str | os.PathLike | np.ndarray
ModelArg = str | os.PathLike | Engine | None


_ENGINES: OrderedDict[tuple[str, str], Engine] = OrderedDict()
_ENGINES_KEPT = 4
_ENGINES_LOCK = threading.Lock()


def _engine(model: VerifiedModel) -> Engine:
    """The engine of a verified model, kept for the next call (the last few, by model file and sha256)."""
    key = (str(model.path), model.card.sha256)
    with _ENGINES_LOCK:
        if key in _ENGINES:
            _ENGINES.move_to_end(key)
            return _ENGINES[key]
    engine = Engine(model)
    with _ENGINES_LOCK:
        _ENGINES[key] = engine
        while len(_ENGINES) > _ENGINES_KEPT:
            _ENGINES.popitem(last=False)
    return engine


def load_engine(model: ModelArg = None, *, store: str | os.PathLike | None = None,
                version: int | None = None) -> Engine:
    """The engine of ``model``: a model name in ``store`` (default: ``birds`` in the serving store, the user store
    when it has a production version of it, else the bundled one: :mod:`model_store.locations`), a version
    folder (``card.json`` + its model file), or an :class:`Engine` (returned as is). The model's sha256 is
    checked on every call; engines are cached by model file and sha256.

    Raises:
        StoreError: the model is missing, its card is invalid or its bytes do not match the card.
    """
    if isinstance(model, Engine):
        return model
    if model is not None and (Path(model) / CARD_FILE).is_file():
        if version is not None:
            raise ValueError(f"version={version} and a model folder ({model}) are exclusive")
        verified = load_folder(Path(model))
    else:
        name = str(model or DEFAULT_MODEL_NAME)
        root = Path(store) if store is not None else serving_store_path(name)
        verified = ModelStore(root).load(name, version)
    return _engine(verified)


def _recordings(inputs: Recording | Iterable[Recording]) -> list[Recording]:
    if isinstance(inputs, str | os.PathLike) or (isinstance(inputs, np.ndarray) and inputs.ndim <= 2
                                                and inputs.dtype != object):
        return [inputs]
    return list(inputs)


def _run(engine: Engine, rec: Recording, sample_rate: int | None, hop_s: float | None,
         embeddings: bool) -> Prediction:
    """One recording through the engine's pipeline: a file streamed from disk, or samples resampled."""
    rate = engine.card.frontend.sample_rate
    if isinstance(rec, np.ndarray):
        if sample_rate is None:
            raise ValueError("arrays of samples need sample_rate= (their rate in Hz)")
        mono = rec.mean(axis=1) if rec.ndim == 2 else rec
        samples = resample(np.asarray(mono, np.float32), int(sample_rate), rate)
        return engine.predict(samples, hop_s=hop_s, embeddings=embeddings)
    with stream(rec, sample_rate=engine.decode_rate) as reader:  # mel: the file's own rate when it can
        return engine.predict(reader, hop_s=hop_s, embeddings=embeddings)


def _frame(preds: Sequence[tuple[str, Prediction]], values: Sequence[np.ndarray], columns: list) -> pd.DataFrame:
    pd = require("pandas", "soundscape.predict/embed")
    index = pd.MultiIndex.from_arrays(
        [[name for name, p in preds for _ in range(len(p))],
         np.concatenate([p.starts_s for _, p in preds]) if preds else np.zeros(0),
         np.concatenate([p.ends_s for _, p in preds]) if preds else np.zeros(0)], names=list(INDEX))
    data = np.concatenate(values) if values else np.zeros((0, len(columns)), np.float32)
    return pd.DataFrame(data, index=index, columns=columns)


def _label(rec: Recording, i: int) -> str:
    return f"array_{i}" if isinstance(rec, np.ndarray) else str(rec)


def predict(inputs: Recording | Iterable[Recording], model: ModelArg = None, *,
            store: str | os.PathLike | None = None, version: int | None = None, sample_rate: int | None = None,
            hop_s: float | None = None, species: Sequence[str] | None = None,
            species_list: str | os.PathLike | None = None) -> pd.DataFrame:
    """Per-window species probabilities of recordings, as the service computes them.

    Args:
        inputs: a path (any format the service reads), an array of samples, or a list of them.
        model: see :func:`load_engine`. (Default: the bundled store's production ``birds``)
        store, version: the store and version of a named model. (Default: the bundled store, production)
        sample_rate (int, optional): the rate of array inputs, in Hz (resampled to the model's).
        hop_s (float, optional): step between windows, >= 1 s. (Default: the card's)
        species: only these columns, in this order: codes or names, as the service's ``species``.
        species_list: a file of species, one code or name per line (BirdNET's ``--slist``), joined to
            ``species``.

    Returns:
        pandas.DataFrame: indexed by ``(file, start_time, end_time)`` (an array is ``array_<i>``), one float32
        column per species code, after the card's smoothing; ``attrs["model"]`` names the model.

    Raises:
        AudioError: a file is not usable audio. UnknownSpeciesError: a species names no label.
        MissingExtraError: pandas is not installed.
    """
    require("pandas", "soundscape.predict")
    engine = load_engine(model, store=store, version=version)
    opts = ResultOptions(hop_s=hop_s)  # the shared option rules (hop >= 1 s)
    requested = [*(species or []), *(read_species_list(species_list) if species_list is not None else [])]
    codes = list(resolve_species(requested, engine.card)) if requested else engine.card.codes
    cols = [engine.card.codes.index(c) for c in codes]
    recs = _recordings(inputs)
    preds = [(_label(r, i), _run(engine, r, sample_rate, opts.hop_s, False)) for i, r in enumerate(recs)]
    df = _frame(preds, [p.probabilities[:, cols] for _, p in preds], codes)
    df.attrs["model"] = {"name": engine.card.name, "version": engine.card.version}
    return df


def embed(inputs: Recording | Iterable[Recording], model: ModelArg = None, *,
          store: str | os.PathLike | None = None, version: int | None = None, sample_rate: int | None = None,
          hop_s: float | None = None) -> pd.DataFrame:
    """Per-window embeddings of recordings (the card's embedding output; a waveform model's: the mean over a
    window's model windows).

    Arguments as :func:`predict`. Returns a frame with the same index and one float32 column per dimension
    (``0 .. dim-1``).

    Raises:
        ValueError: the model has no embedding output.
    """
    require("pandas", "soundscape.embed")
    engine = load_engine(model, store=store, version=version)
    if engine.card.embedding_output is None:
        raise ValueError(f"{engine.card.name} v{engine.card.version} has no embedding output")
    opts = ResultOptions(hop_s=hop_s)
    recs = _recordings(inputs)
    preds = [(_label(r, i), _run(engine, r, sample_rate, opts.hop_s, True)) for i, r in enumerate(recs)]
    dim = engine.card.embedding_output.shape[-1] or (preds[0][1].embeddings.shape[1] if preds else 0)
    df = _frame(preds, [p.embeddings for _, p in preds], list(range(dim)))
    df.attrs["model"] = {"name": engine.card.name, "version": engine.card.version}
    return df
