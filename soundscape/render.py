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
Raven              Raven Pro selection table with ``Begin Path`` and            applied
                   ``File Offset (s)`` (:func:`raven`)
Audacity           Audacity label track, common names (:func:`audacity`)       applied
Kaleidoscope       Kaleidoscope-compatible CSV (:func:`kaleidoscope`)           applied
embeddings         one row per window with its vector (:func:`embeddings_table`)  not applied
=================  ===========================================================  ==========================

``species`` restricts every format to those labels (in the order asked). Probabilities are written with 6
decimals, times of the JSON with 3. Detections are ordered by window, then by falling probability (ties in
column order). Every table names the model (name and version) in its rows, except BirdCLEF rows, whose
columns the competition fixes (the service sends ``X-Model-Name``/``X-Model-Version``; ``soundscape analyze``
writes the model to ``summary.json``), and Audacity labels, which are not a table.

Tables of several files (:func:`combine`): the header once, then each file's rows in order; a Raven table's
``Selection`` runs on and its ``Begin Time (s)``/``End Time (s)`` are on the files' joined timeline (each file
starts where the previous one ended, as Raven lays out a file sequence), while ``Begin Path`` and
``File Offset (s)`` still point into each recording.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
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
    "COMBINABLE",
    "DETECTION_COLUMNS",
    "KALEIDOSCOPE_COLUMNS",
    "RAVEN_COLUMNS",
    "TEXT_FORMATS",
    "Detection",
    "audacity",
    "birdclef_csv",
    "birdclef_header",
    "columns",
    "combine",
    "detections",
    "detections_csv",
    "detections_table",
    "embeddings_table",
    "join_csv",
    "kaleidoscope",
    "postprocess_header",
    "raven",
    "render_text",
    "response",
    "response_json",
    "row_id",
    "table",
]

DETECTION_COLUMNS = ["file", "start_s", "end_s", "row_id", "code", "common_name", "scientific_name", "confidence",
                     "model", "model_version"]
# Raven Pro's selection table: its seven standard columns, then the two measurements Raven uses to open the
# recording at a selection ("Begin Path": the sound file; "File Offset (s)": the selection's start in it),
# then our annotation columns.
RAVEN_COLUMNS = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
                 "High Freq (Hz)", "Begin Path", "File Offset (s)", "Begin File", "Species Code", "Common Name",
                 "Confidence", "Model", "Model Version"]
# Kaleidoscope's id.csv columns that locate an event (INDIR, FOLDER, IN FILE, CHANNEL, OFFSET, DURATION; in
# its order) and its label column (MANUAL ID), then ours, lower-case as BirdNET-Analyzer's Kaleidoscope CSV.
KALEIDOSCOPE_COLUMNS = ["INDIR", "FOLDER", "IN FILE", "CHANNEL", "OFFSET", "DURATION", "MANUAL ID",
                        "common_name", "scientific_name", "confidence", "model", "model_version"]


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
                    names[d.code].scientific_name, _conf(d.confidence), card.name, card.version] for d in dets],
                 header=DETECTION_COLUMNS)


def detections_table(dets: list[Detection], card: ModelCard, source: str, stem: str) -> pa.Table:
    """The detections as a typed Arrow table (for Parquet; needs pyarrow)."""
    import pyarrow as pa

    names = {lab.code: lab for lab in card.labels}
    schema = pa.schema([pa.field("file", pa.string()), pa.field("start_s", pa.float64()),
                        pa.field("end_s", pa.float64()), pa.field("row_id", pa.string()),
                        pa.field("code", pa.string()), pa.field("common_name", pa.string()),
                        pa.field("scientific_name", pa.string()), pa.field("confidence", pa.float32()),
                        pa.field("model", pa.string()), pa.field("model_version", pa.int64())])
    return pa.table({
        "file": [source] * len(dets), "start_s": [d.start_s for d in dets], "end_s": [d.end_s for d in dets],
        "row_id": [row_id(stem, d.end_s) for d in dets], "code": [d.code for d in dets],
        "common_name": [names[d.code].common_name for d in dets],
        "scientific_name": [names[d.code].scientific_name for d in dets],
        "confidence": np.asarray([d.confidence for d in dets], np.float32),
        "model": [card.name] * len(dets), "model_version": [card.version] * len(dets),
    }, schema=schema)


def _common(card: ModelCard) -> dict[str, str]:
    """Code -> common name (the code when the card has none)."""
    return {lab.code: lab.common_name or lab.code for lab in card.labels}


def raven(dets: list[Detection], card: ModelCard, source: str) -> str:
    """A Raven Pro selection table: tab-separated, :data:`RAVEN_COLUMNS`; one selection per detection, spanning
    the window in time and the front end's band in frequency. ``source`` is the recording's path (``Begin
    Path``; absolute in ``soundscape analyze``), so Raven opens it at ``File Offset (s)``; in one file's table
    ``Begin Time (s)`` equals the offset."""
    fe = card.frontend
    common = _common(card)
    name = PurePath(source).name
    return table([[i + 1, "Spectrogram 1", 1, f"{d.start_s:.4f}", f"{d.end_s:.4f}", f"{fe.fmin:g}", f"{fe.fmax:g}",
                    source, f"{d.start_s:.4f}", name, d.code, common[d.code], _conf(d.confidence), card.name,
                    card.version] for i, d in enumerate(dets)],
                 header=RAVEN_COLUMNS, delimiter="\t")


def audacity(dets: list[Detection], card: ModelCard) -> str:
    """An Audacity label track: ``start<TAB>end<TAB>common name;code;confidence`` per detection, no header."""
    common = _common(card)
    return table([[f"{d.start_s:.6f}", f"{d.end_s:.6f}", f"{common[d.code]};{d.code};{_conf(d.confidence)}"]
                  for d in dets], delimiter="\t")


def kaleidoscope(dets: list[Detection], card: ModelCard, source: str, root: str | None = None) -> str:
    """A Kaleidoscope-compatible CSV (:data:`KALEIDOSCOPE_COLUMNS`): ``INDIR`` the folder analysed (``root``;
    default: the recording's folder), ``FOLDER`` the recording's sub-folder under it, ``IN FILE`` its name,
    ``CHANNEL`` 0 (the mono mix), ``OFFSET``/``DURATION`` the window, ``MANUAL ID`` the species code."""
    path = PurePath(source)
    indir = PurePath(root) if root is not None else path.parent
    try:
        folder = path.parent.relative_to(indir).as_posix()
    except ValueError:  # not under root
        indir, folder = path.parent, ""
    folder = "" if folder == "." else folder
    names = {lab.code: lab for lab in card.labels}
    return table([[str(indir) if str(indir) != "." else "", folder, path.name, 0, f"{d.start_s:.4f}",
                   f"{d.end_s - d.start_s:.4f}", d.code, names[d.code].common_name, names[d.code].scientific_name,
                   _conf(d.confidence), card.name, card.version] for d in dets], header=KALEIDOSCOPE_COLUMNS)


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
    "kaleidoscope": ".kaleidoscope.csv",
    "json": ".json",
}
# Formats whose tables of several files make one table (:func:`combine`); Parquet too (``soundscape analyze``).
COMBINABLE = ("csv", "birdclef", "raven", "kaleidoscope")


def render_text(fmt: str, pred: Prediction, card: ModelCard, opts: ResultOptions, *, source: str, stem: str,
                dets: list[Detection] | None = None, root: str | None = None) -> str:
    """One text format of a file's result, by its ``soundscape analyze`` name (:data:`TEXT_FORMATS`).

    ``source`` fills the detections' file columns (Raven's ``Begin Path``), ``stem`` the row ids, ``root`` the
    Kaleidoscope ``INDIR``; ``dets`` are :func:`detections` of the same result and options when the caller has
    them. ``json`` carries no timings, so re-rendering a result gives identical bytes.

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
    if fmt == "kaleidoscope":
        return kaleidoscope(dets, card, source, root)
    return raven(dets, card, source) if fmt == "raven" else audacity(dets, card)


def _shift_raven(part: str, first_selection: int, offset_s: float) -> tuple[list[str], int]:
    """One file's Raven rows moved onto the joined timeline: selections from ``first_selection`` and
    times + ``offset_s``; the next free selection number."""
    begin, end = RAVEN_COLUMNS.index("Begin Time (s)"), RAVEN_COLUMNS.index("End Time (s)")
    rows = []
    for line in part.splitlines()[1:]:
        cells = line.split("\t")
        cells[0] = str(first_selection + len(rows))
        cells[begin] = f"{float(cells[begin]) + offset_s:.4f}"
        cells[end] = f"{float(cells[end]) + offset_s:.4f}"
        rows.append("\t".join(cells) + "\n")
    return rows, first_selection + len(rows)


def combine(fmt: str, parts: Sequence[str], durations_s: Sequence[float], header: str | None = None) -> str:
    """One table of several files' tables of format ``fmt`` (:data:`COMBINABLE`), in order.

    Args:
        fmt (str): the format's name.
        parts (Sequence[str]): each file's table, header first, as :func:`render_text` wrote it.
        durations_s (Sequence[float]): each file's duration (Raven: where the next file starts).
        header (str, optional): the header line when there are no parts. (Default: the format's columns)

    Raises:
        ValueError: a format whose files do not make one table (``audacity``, ``json``).
    """
    if fmt not in COMBINABLE:
        raise ValueError(f"{fmt} files do not combine into one table; the formats that do: {', '.join(COMBINABLE)}")
    default = {"csv": DETECTION_COLUMNS, "raven": RAVEN_COLUMNS, "kaleidoscope": KALEIDOSCOPE_COLUMNS}
    first = next((p.split("\n", 1)[0] for p in parts if p), None) or header
    if first is None:
        if fmt not in default:
            raise ValueError(f"combining no {fmt} tables needs their header")
        first = table([], header=default[fmt], delimiter="\t" if fmt == "raven" else ",").rstrip("\n")
    if fmt != "raven":
        return first + "\n" + "".join(p.split("\n", 1)[1] if "\n" in p else "" for p in parts)
    out, selection, offset = [first + "\n"], 1, 0.0
    for part, duration in zip(parts, durations_s, strict=True):
        rows, selection = _shift_raven(part, selection, offset)
        out += rows
        offset += duration
    return "".join(out)
