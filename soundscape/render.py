"""Every output format, rendered from one :class:`~soundscape.pipeline.Prediction`, for every entry point.

The service (``/v1/predict``, ``/v1/predict/batch``) and ``soundscape analyze`` write through these
functions, so the same file, model and options give the same bytes wherever they are asked for.

=================  ===========================================================  ==========================
format             what                                                         filters (threshold, top_k)
=================  ===========================================================  ==========================
JSON               the service's ``PredictResponse`` (:func:`response`)         applied (windows, summary)
BirdCLEF CSV       ``row_id`` + one probability column per species              not applied: every window
                   (:func:`birdclef_csv`; the service's ``format=csv``)         and requested species
detections         one row per (window, species) kept: CSV and Parquet          applied
                   (:func:`detections_csv`, :func:`detections_table`)
Raven              Raven Pro selection table (:func:`raven`)                    applied
Audacity           Audacity label track (:func:`audacity`)                      applied
embeddings         one row per window with its vector (:func:`embeddings_table`)  not applied
=================  ===========================================================  ==========================

``species`` restricts every format to those labels (in the order asked). Probabilities are written with 6
decimals, times of the JSON with 3. Detections are ordered by window, then by falling probability (ties in
column order).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from model_store import ModelCard
from soundscape.options import ResultOptions
from soundscape.pipeline import Prediction
from soundscape.postprocess import PostprocessReport
from soundscape.schemas import AudioSummary, ModelRef, PredictResponse, Timings, WindowResult

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "DETECTION_COLUMNS",
    "RAVEN_COLUMNS",
    "TEXT_FORMATS",
    "Detection",
    "audacity",
    "birdclef_csv",
    "birdclef_header",
    "columns",
    "detections",
    "detections_csv",
    "detections_table",
    "embeddings_table",
    "join_csv",
    "postprocess_header",
    "raven",
    "render_text",
    "response",
    "response_json",
    "row_id",
    "table",
]

DETECTION_COLUMNS = ["file", "start_s", "end_s", "row_id", "code", "common_name", "scientific_name", "confidence"]
# Raven Pro's selection table: its seven standard columns, then ours (annotations and measurements).
RAVEN_COLUMNS = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
                 "High Freq (Hz)", "Begin File", "Species Code", "Common Name", "Confidence"]


def row_id(stem: str, end_s: float) -> str:
    """BirdCLEF row id of a window: ``<file stem>_<int(end_s)>``.

    A hair of slack keeps 15.0 at 15 when the end time comes from float sums (e.g. ``0.1 * 150``). Unique
    within a file at every accepted hop (>= 1 s, :data:`soundscape.options.MIN_HOP_S`).
    """
    return f"{stem}_{int(end_s + 1e-6)}"


def _conf(p: float) -> str:
    return f"{p:.6f}"


def columns(card: ModelCard, species: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
    """The reported labels (all, or ``species`` in the order asked) and their indices in the card."""
    codes = card.codes
    if not species:
        return codes, np.arange(len(codes))
    index = {c: i for i, c in enumerate(codes)}
    return list(species), np.array([index[c] for c in species], dtype=np.int64)


def _kept(row: np.ndarray, opts: ResultOptions) -> np.ndarray:
    """Column indices of one row that pass ``threshold`` then ``top_k``, by falling probability."""
    order = np.argsort(-row, kind="stable")
    if opts.threshold is not None:
        order = order[row[order] >= opts.threshold]
    return order[: opts.top_k] if opts.top_k else order


def _filtered(codes: list[str], row: np.ndarray, opts: ResultOptions) -> dict[str, float]:
    kept = _kept(row, opts)
    if not opts.top_k:
        kept = np.sort(kept)  # no ranking asked for: column order
    return {codes[i]: round(float(row[i]), 6) for i in kept}


# -- JSON ------------------------------------------------------------------------------------------------
def response(pred: Prediction, card: ModelCard, stem: str, opts: ResultOptions | None = None) -> PredictResponse:
    """The service's ``/v1/predict`` answer: windows and summary after the filters; zero timings when the
    prediction carries none (batch analysis: re-running a file writes identical bytes)."""
    opts = opts or ResultOptions()
    codes, cols = columns(card, opts.species)
    probs = pred.probabilities[:, cols]
    windows = [
        WindowResult(start_s=round(float(s), 3), end_s=round(float(s) + pred.window_s, 3),
                     row_id=row_id(stem, float(s) + pred.window_s), probabilities=_filtered(codes, row, opts))
        for s, row in zip(pred.starts_s, probs, strict=True)
    ]
    t = pred.times
    timings = (Timings(decode_ms=round(t.decode_s * 1000, 2), frontend_ms=round(t.frontend_s * 1000, 2),
                       model_ms=round(t.model_s * 1000, 2), total_ms=round(t.total_s * 1000, 2)) if t
               else Timings(decode_ms=0, frontend_ms=0, model_ms=0, total_ms=0))
    audio = pred.audio
    return PredictResponse(
        model=ModelRef(name=card.name, version=card.version),
        postprocess=pred.postprocess or PostprocessReport(smoothing=card.postprocess.smoothing, applied=False,
                                                          note="postprocessing switched off by the caller"),
        audio=AudioSummary(duration_s=round(audio.duration_s, 3) if audio else 0.0,
                           sample_rate=audio.sample_rate if audio else card.frontend.sample_rate,
                           channels=audio.channels if audio else 1, windows=len(windows)),
        windows=windows,
        summary=_filtered(codes, probs.max(axis=0), opts) if len(probs) else {},
        timings=timings,
    )


def response_json(pred: Prediction, card: ModelCard, stem: str, opts: ResultOptions | None = None) -> str:
    """:func:`response` as the text ``soundscape analyze`` writes (``.json``)."""
    return json.dumps(response(pred, card, stem, opts).model_dump(mode="json"), indent=1) + "\n"


def postprocess_header(report: PostprocessReport) -> str:
    """``X-Postprocess`` of a CSV answer, e.g. ``smoothing=neighbours; applied=true; neighbour_offset=1``."""
    parts = [f"smoothing={report.smoothing}", f"applied={str(report.applied).lower()}"]
    if report.neighbour_offset is not None:
        parts.append(f"neighbour_offset={report.neighbour_offset}")
    return "; ".join(parts)


# -- CSV and text tables -----------------------------------------------------------------------------
def table(rows: list[list], *, header: list[str] | None = None, delimiter: str = ",") -> str:
    """CSV (or, with ``delimiter="\\t"``, tab-separated) text: an optional header, then the rows."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def birdclef_header(card: ModelCard, species: Sequence[str] | None = None) -> list[str]:
    return ["row_id", *columns(card, species)[0]]


def birdclef_csv(pred: Prediction, card: ModelCard, stem: str, species: Sequence[str] | None = None) -> str:
    """BirdCLEF submission rows: a header ``row_id,<code>,...`` and one row per window (no threshold or
    top-k: every window and every requested species)."""
    _, cols = columns(card, species)
    rows = [[row_id(stem, float(e)), *map(_conf, row)] for e, row in zip(pred.ends_s, pred.probabilities[:, cols],
                                                                           strict=True)]
    return table(rows, header=birdclef_header(card, species))


def join_csv(header: list[str], parts: Sequence[str]) -> str:
    """One CSV of several files' CSVs with the same header: the header once, then each part's rows."""
    body = "".join(p.split("\n", 1)[1] if "\n" in p else "" for p in parts)
    return table([], header=header) + body


# -- detections ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Detection:
    """One (window, label) pair that passed the filters."""

    window: int
    start_s: float
    end_s: float
    code: str
    confidence: float


def detections(pred: Prediction, card: ModelCard, opts: ResultOptions) -> list[Detection]:
    """The (window, species) pairs kept by ``species``, then ``threshold``, then ``top_k`` per window."""
    codes, cols = columns(card, opts.species)
    out = []
    for w, row in enumerate(pred.probabilities[:, cols]):
        start, end = float(pred.starts_s[w]), float(pred.starts_s[w] + pred.window_s)
        out.extend(Detection(w, start, end, codes[j], float(row[j])) for j in _kept(row, opts))
    return out


def detections_csv(dets: list[Detection], card: ModelCard, source: str, stem: str) -> str:
    """One row per detection: :data:`DETECTION_COLUMNS`."""
    names = {lab.code: lab for lab in card.labels}
    return table([[source, d.start_s, d.end_s, row_id(stem, d.end_s), d.code, names[d.code].common_name,
                    names[d.code].scientific_name, _conf(d.confidence)] for d in dets], header=DETECTION_COLUMNS)


def detections_table(dets: list[Detection], card: ModelCard, source: str, stem: str) -> pa.Table:
    """The detections as a typed Arrow table (for Parquet; needs pyarrow)."""
    import pyarrow as pa

    names = {lab.code: lab for lab in card.labels}
    schema = pa.schema([pa.field("file", pa.string()), pa.field("start_s", pa.float64()),
                        pa.field("end_s", pa.float64()), pa.field("row_id", pa.string()),
                        pa.field("code", pa.string()), pa.field("common_name", pa.string()),
                        pa.field("scientific_name", pa.string()), pa.field("confidence", pa.float32())])
    return pa.table({
        "file": [source] * len(dets), "start_s": [d.start_s for d in dets], "end_s": [d.end_s for d in dets],
        "row_id": [row_id(stem, d.end_s) for d in dets], "code": [d.code for d in dets],
        "common_name": [names[d.code].common_name for d in dets],
        "scientific_name": [names[d.code].scientific_name for d in dets],
        "confidence": np.asarray([d.confidence for d in dets], np.float32),
    }, schema=schema)


def raven(dets: list[Detection], card: ModelCard, source: str) -> str:
    """A Raven Pro selection table: tab-separated, the standard columns then ours (:data:`RAVEN_COLUMNS`);
    one selection per detection, spanning the window in time and the front end's band in frequency."""
    fe = card.frontend
    names = {lab.code: lab for lab in card.labels}
    return table([[i + 1, "Spectrogram 1", 1, f"{d.start_s:.4f}", f"{d.end_s:.4f}", f"{fe.fmin:g}", f"{fe.fmax:g}",
                    source, d.code, names[d.code].common_name, _conf(d.confidence)] for i, d in enumerate(dets)],
                  header=RAVEN_COLUMNS, delimiter="\t")


def audacity(dets: list[Detection]) -> str:
    """An Audacity label track: ``start<TAB>end<TAB>code;confidence`` per detection, no header."""
    return table([[f"{d.start_s:.6f}", f"{d.end_s:.6f}", f"{d.code};{_conf(d.confidence)}"] for d in dets],
                  delimiter="\t")


def embeddings_table(pred: Prediction, source: str, stem: str) -> pa.Table:
    """One row per window with its embedding vector (needs pyarrow)."""
    import pyarrow as pa

    emb = pred.embeddings if pred.embeddings is not None else np.zeros((0, 0), np.float32)
    dim = emb.shape[1] if emb.ndim == 2 else 0
    schema = pa.schema([pa.field("file", pa.string()), pa.field("start_s", pa.float64()),
                        pa.field("end_s", pa.float64()), pa.field("row_id", pa.string()),
                        pa.field("embedding", pa.list_(pa.float32(), dim))])
    return pa.table({
        "file": [source] * len(pred), "start_s": pred.starts_s, "end_s": pred.ends_s,
        "row_id": [row_id(stem, e) for e in pred.ends_s],
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), pa.float32()), dim),
    }, schema=schema)


# -- one text format by name ---------------------------------------------------------------------------
# The text formats of ``soundscape analyze`` (its ``--format`` names) and their file suffixes; the service's
# result downloads (``/v1/review/{id}/download``) use the same names and this same function.
TEXT_FORMATS: dict[str, str] = {
    "csv": ".detections.csv",
    "birdclef": ".submission.csv",
    "raven": ".selections.txt",
    "audacity": ".labels.txt",
    "json": ".json",
}


def render_text(fmt: str, pred: Prediction, card: ModelCard, opts: ResultOptions, *, source: str, stem: str,
                dets: list[Detection] | None = None) -> str:
    """One text format of a file's result, by its ``soundscape analyze`` name (:data:`TEXT_FORMATS`).

    ``source`` fills the detections' file columns, ``stem`` the row ids; ``dets`` are
    :func:`detections` of the same result and options when the caller has them. ``json`` carries no
    timings, so re-rendering a result gives identical bytes.

    Raises:
        ValueError: an unknown format name.
    """
    if fmt == "birdclef":
        return birdclef_csv(pred, card, stem, opts.species)
    if fmt == "json":
        return response_json(dataclasses.replace(pred, times=None), card, stem, opts)
    if fmt not in TEXT_FORMATS:
        raise ValueError(f"unknown text format {fmt!r}; the formats are {', '.join(TEXT_FORMATS)}")
    dets = detections(pred, card, opts) if dets is None else dets
    if fmt == "csv":
        return detections_csv(dets, card, source, stem)
    return raven(dets, card, source) if fmt == "raven" else audacity(dets)
