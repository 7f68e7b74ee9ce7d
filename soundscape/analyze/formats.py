"""Output formats of batch analysis, each written atomically (temp file, then ``os.replace``).

Per file (``OUT/<relative folder>/<stem>.<suffix>``):

- ``csv``       ``.detections.csv``: one row per window and label that passed the filters.
- ``parquet``   ``.detections.parquet``: the same rows, typed (needs pyarrow).
- ``birdclef``  ``.submission.csv``: BirdCLEF rows (``row_id`` + every label's probability); the run
  also writes them all to ``OUT/submission.csv``.
- ``raven``     ``.selections.txt``: a Raven Pro selection table (tab-separated).
- ``audacity``  ``.labels.txt``: Audacity labels (``start<TAB>end<TAB>common name;code;confidence``).
- ``kaleidoscope`` ``.kaleidoscope.csv``: a Kaleidoscope-compatible CSV (``INDIR``: the folder analysed).
- ``json``      ``.json``: the HTTP service's ``/v1/predict`` answer for the file with the same options.
- ``--embeddings`` ``.embeddings.parquet``: one row per window with its embedding vector.

With ``--combine`` the run also gets one table per table format, ``OUT/combined.<suffix>``
(:func:`write_combined`): the files' tables joined by :func:`soundscape.render.combine`.

Every format is rendered by :mod:`soundscape.render`, the service's own renderers (the service answers
``format=json`` and ``format=csv`` = ``birdclef`` with them); this module only writes the files. Every
probability written is the one after the card's temporal smoothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from model_store import ModelCard
from soundscape import render
from soundscape.options import ResultOptions
from soundscape.pipeline import Prediction

__all__ = ["COMBINED", "SUFFIXES", "TMP_MARK", "write_atomic", "write_combined", "write_outputs"]

SUFFIXES: dict[str, str] = {
    "csv": render.TEXT_FORMATS["csv"],
    "parquet": ".detections.parquet",
    **{fmt: suffix for fmt, suffix in render.TEXT_FORMATS.items() if fmt != "csv"},
    "embeddings": ".embeddings.parquet",
}
TMP_MARK = ".tmp-"
COMBINED = "combined"  # OUT/combined.<suffix>: the run's tables (--combine)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temp file beside ``path``, fsync it and rename it to ``path``.

    A killed run leaves either no file or the complete one (plus, at worst, a temp file that the next
    run removes).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _text(text: str) -> Callable[[Path], None]:
    return lambda tmp: tmp.write_text(text, encoding="utf-8")


def _parquet(table) -> Callable[[Path], None]:
    import pyarrow.parquet as pq

    return lambda tmp: pq.write_table(table, tmp)


def write_outputs(base: Path, source: str, pred: Prediction, card: ModelCard, opts: ResultOptions,
                  formats: list[str], embeddings: bool, *,
                  root: str | None = None) -> tuple[list[str], list[render.Detection]]:
    """Write the requested formats for one file.

    Args:
        base (Path): ``OUT/<relative folder>/<stem>``; each format adds its suffix.
        source (str): the input path, as written in the ``file`` columns.
        pred (Prediction): the file's per-window results.
        card (ModelCard): the model's card (label names, frequency range).
        opts (ResultOptions): the filters (species, threshold, top-k).
        formats (list[str]): format names (keys of :data:`SUFFIXES`).
        embeddings (bool): also write ``.embeddings.parquet``.
        root (str, optional): the folder the file was found under (Kaleidoscope's ``INDIR``).

    Returns:
        tuple: the paths written, and the file's detections.
    """
    stem = base.name
    dets = render.detections(pred, card, opts)

    def text(fmt: str) -> Callable[[], Callable[[Path], None]]:
        # the text formats by name, as the service's result downloads render them (no timings in json)
        return lambda: _text(render.render_text(fmt, pred, card, opts, source=source, stem=stem, dets=dets,
                                                root=root))

    writers: dict[str, Callable[[], Callable[[Path], None]]] = {
        **{fmt: text(fmt) for fmt in render.TEXT_FORMATS},
        "parquet": lambda: _parquet(render.detections_table(dets, card, source, stem)),
        "embeddings": lambda: _parquet(render.embeddings_table(pred, source, stem)),
    }
    written = []
    for fmt in [*[f for f in SUFFIXES if f in formats], *(["embeddings"] if embeddings else [])]:
        path = base.with_name(stem + SUFFIXES[fmt])
        write_atomic(path, writers[fmt]())
        written.append(str(path))
    return written, dets


def _combined_parquet(out: Path, card: ModelCard, rels: list[str]) -> Callable[[Path], None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = render.detections_table([], card, "", "")
    tables = [pq.read_table(out / (rel + SUFFIXES["parquet"])) for rel in rels]
    whole = pa.concat_tables([empty, *tables]) if tables else empty
    return lambda tmp: pq.write_table(whole, tmp)


def write_combined(out: Path, card: ModelCard, formats: list[str], done: list[tuple[str, float]]) -> list[str]:
    """The run's tables (``OUT/combined.<suffix>``) from its files' outputs, for the formats that combine.

    Args:
        out (Path): the run's output folder.
        card (ModelCard): the model (the schema of an empty table).
        formats (list[str]): the run's formats; BirdCLEF is left out (``OUT/submission.csv`` is its run table).
        done (list[tuple[str, float]]): each finished file's output name (``rel``) and duration in seconds, in
            the run's order.

    Returns:
        list[str]: the paths written.
    """
    rels = [rel for rel, _ in done]
    written = []
    for fmt in [f for f in SUFFIXES if f in formats and (f in render.COMBINABLE or f == "parquet")]:
        if fmt == "birdclef":
            continue
        path = out / (COMBINED + SUFFIXES[fmt])
        if fmt == "parquet":
            write_atomic(path, _combined_parquet(out, card, rels))
        else:
            parts = [(out / (rel + SUFFIXES[fmt])).read_text(encoding="utf-8") for rel in rels]
            write_atomic(path, _text(render.combine(fmt, parts, [d for _, d in done])))
        written.append(str(path))
    return written
