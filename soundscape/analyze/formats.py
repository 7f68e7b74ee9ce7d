"""Output formats of batch analysis, each written atomically (temp file, then ``os.replace``).

Per file (``OUT/<relative folder>/<stem>.<suffix>``):

- ``csv``       ``.detections.csv``: one row per window and label that passed the filters.
- ``parquet``   ``.detections.parquet``: the same rows, typed (needs pyarrow).
- ``birdclef``  ``.submission.csv``: BirdCLEF rows (``row_id`` + every label's probability); the run
  also writes them all to ``OUT/submission.csv``.
- ``raven``     ``.selections.txt``: a Raven Pro selection table (tab-separated).
- ``audacity``  ``.labels.txt``: Audacity labels (``start<TAB>end<TAB>code;confidence``).
- ``json``      ``.json``: the HTTP service's ``/v1/predict`` answer for the file (every label; its
  pydantic schema, :mod:`app.schemas`, which imports no FastAPI).
- ``--embeddings`` ``.embeddings.parquet``: one row per window with its embedding vector.

Every probability written is the one after the card's temporal smoothing (``FileAnalysis.probabilities``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from model_store import ModelCard
from soundscape.inference import row_id

from .core import Detection, FileAnalysis

__all__ = ["SUFFIXES", "TMP_MARK", "row_id", "service_json", "write_atomic", "write_outputs"]

SUFFIXES: dict[str, str] = {
    "csv": ".detections.csv",
    "parquet": ".detections.parquet",
    "birdclef": ".submission.csv",
    "raven": ".selections.txt",
    "audacity": ".labels.txt",
    "json": ".json",
    "embeddings": ".embeddings.parquet",
}
TMP_MARK = ".tmp-"
CSV_COLUMNS = ["file", "start_s", "end_s", "row_id", "code", "common_name", "scientific_name", "confidence"]
RAVEN_COLUMNS = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
                 "High Freq (Hz)", "Begin File", "Species Code", "Common Name", "Confidence"]


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


def _text(rows: list[list], delimiter: str = ",", header: list[str] | None = None) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
        if header:
            w.writerow(header)
        w.writerows(rows)
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return write


def _conf(p: float) -> str:
    return f"{p:.6f}"


def service_json(result: FileAnalysis, card: ModelCard, stem: str) -> dict:
    """The service's ``/v1/predict`` answer for one file (no filters), built with its own schema.

    Same rounding as the service (probabilities 6 decimals, times 3) and the same ``postprocess`` report
    (the probabilities are already smoothed by the card's rule); ``timings`` are zeros so that
    re-running a file writes identical bytes (the run's ``summary.json`` has the throughput).
    """
    from app.schemas import AudioSummary, ModelRef, PredictResponse, Timings, WindowResult  # pydantic only

    codes = card.codes
    probs = result.probabilities
    windows = [
        WindowResult(start_s=round(float(s), 3), end_s=round(float(e), 3), row_id=row_id(stem, e),
                     probabilities={c: round(float(p), 6) for c, p in zip(codes, row, strict=True)})
        for s, e, row in zip(result.starts_s, result.ends_s, probs, strict=True)
    ]
    response = PredictResponse(
        model=ModelRef(name=card.name, version=card.version),
        postprocess=result.postprocess,
        audio=AudioSummary(duration_s=round(result.duration_s, 3), sample_rate=result.sample_rate,
                           channels=result.channels, windows=len(windows)),
        windows=windows,
        summary={c: round(float(p), 6) for c, p in zip(codes, probs.max(axis=0), strict=True)} if len(probs)
        else {},
        timings=Timings(decode_ms=0, frontend_ms=0, model_ms=0, total_ms=0),
    )
    return response.model_dump(mode="json")


def _parquet(columns: dict, schema_fields: list) -> Callable[[Path], None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(columns, schema=pa.schema(schema_fields))

    def write(tmp: Path) -> None:
        pq.write_table(table, tmp)
    return write


def write_outputs(base: Path, source: str, result: FileAnalysis, dets: list[Detection], card: ModelCard,
                  formats: list[str], embeddings: bool) -> list[str]:
    """Write the requested formats for one file; returns the paths written.

    Args:
        base (Path): ``OUT/<relative folder>/<stem>``; each format adds its suffix.
        source (str): the input path, as written in the ``file`` columns.
        result (FileAnalysis): the file's per-window results.
        dets (list[Detection]): the filtered detections of ``result``.
        card (ModelCard): the model's card (label names, frequency range).
        formats (list[str]): format names (keys of :data:`SUFFIXES`).
        embeddings (bool): also write ``.embeddings.parquet``.
    """
    stem = base.name
    names = {lab.code: lab for lab in card.labels}
    written = []

    def out(fmt: str, write: Callable[[Path], None]) -> None:
        path = base.with_name(stem + SUFFIXES[fmt])
        write_atomic(path, write)
        written.append(str(path))

    if "csv" in formats:
        out("csv", _text([[source, d.start_s, d.end_s, row_id(stem, d.end_s), d.code, names[d.code].common_name,
                           names[d.code].scientific_name, _conf(d.confidence)] for d in dets],
                         header=CSV_COLUMNS))
    if "parquet" in formats or embeddings:
        import pyarrow as pa
    if "parquet" in formats:
        out("parquet", _parquet({
            "file": [source] * len(dets), "start_s": [d.start_s for d in dets], "end_s": [d.end_s for d in dets],
            "row_id": [row_id(stem, d.end_s) for d in dets], "code": [d.code for d in dets],
            "common_name": [names[d.code].common_name for d in dets],
            "scientific_name": [names[d.code].scientific_name for d in dets],
            "confidence": np.asarray([d.confidence for d in dets], np.float32),
        }, [pa.field("file", pa.string()), pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64()),
            pa.field("row_id", pa.string()), pa.field("code", pa.string()), pa.field("common_name", pa.string()),
            pa.field("scientific_name", pa.string()), pa.field("confidence", pa.float32())]))
    if "birdclef" in formats:
        out("birdclef", _text([[row_id(stem, e), *map(_conf, row)]
                               for e, row in zip(result.ends_s, result.probabilities, strict=True)],
                              header=["row_id", *card.codes]))
    if "raven" in formats:
        fe = card.frontend
        out("raven", _text([[i + 1, "Spectrogram 1", 1, f"{d.start_s:.4f}", f"{d.end_s:.4f}", f"{fe.fmin:g}",
                             f"{fe.fmax:g}", source, d.code, names[d.code].common_name, _conf(d.confidence)]
                            for i, d in enumerate(dets)], delimiter="\t", header=RAVEN_COLUMNS))
    if "audacity" in formats:
        out("audacity", _text([[f"{d.start_s:.6f}", f"{d.end_s:.6f}", f"{d.code};{_conf(d.confidence)}"]
                               for d in dets], delimiter="\t"))
    if "json" in formats:
        doc = json.dumps(service_json(result, card, stem), indent=1) + "\n"
        out("json", lambda tmp: tmp.write_text(doc, encoding="utf-8"))
    if embeddings:
        emb = result.embeddings if result.embeddings is not None else np.zeros((0, 0), np.float32)
        dim = emb.shape[1] if emb.ndim == 2 else 0
        out("embeddings", _parquet({
            "file": [source] * len(result.starts_s), "start_s": result.starts_s, "end_s": result.ends_s,
            "row_id": [row_id(stem, e) for e in result.ends_s],
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), pa.float32()), dim),
        }, [pa.field("file", pa.string()), pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64()),
            pa.field("row_id", pa.string()), pa.field("embedding", pa.list_(pa.float32(), dim))]))
    return written
