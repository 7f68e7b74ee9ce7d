"""Training inputs in the shapes people have, turned into the one clip list the rest of training uses.

- BirdCLEF layout: ``train_metadata.csv`` + audio root (:func:`training.data.read_metadata`);
- one folder per species: ``<species_dirs>/<code>/*.wav`` (any format of
  :data:`soundscape.audio.AUDIO_EXTENSIONS`, recursively), every file a clip of ``<code>``;
- Raven selection tables of long recordings: every annotation box (``Begin Time (s)``, ``End Time (s)``,
  ``Low Freq (Hz)``, ``High Freq (Hz)``, a species column) becomes a clip whose ``span`` is a window-long crop
  centred on the box (the box itself when longer), the species of other boxes inside that crop its secondary
  labels; the recording is ``Begin Path`` (with ``File Offset (s)`` the box's time in that file), else
  ``Begin File`` or the table's own name (``<recording>.Table.1.selections.txt``) in ``audio_dir``. The
  stretches of an annotated recording with no box (``negative_margin_s`` away from any) are negative windows:
  call-free beds the clips are mixed into (:func:`raven_negatives`, used by
  :func:`training.augment.load_beds`).

:func:`read_clips` is the one place that picks the reader; validation, augmentation, call crops,
self-training and embedding heads only see :class:`~training.data.Clip` objects.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soundscape.audio import AUDIO_EXTENSIONS, AudioError

from .data import AudioCache, CachedStretch, Clip, ProblemReport, list_audio_files, read_metadata, read_taxonomy

if TYPE_CHECKING:
    from .config import RavenConfig, TrainConfig

__all__ = ["Box", "load_clips", "raven_clips", "raven_negatives", "read_clips", "read_raven", "read_species_dirs"]

log = logging.getLogger(__name__)

SPECIES_COLUMNS = ("species", "annotation", "code", "label", "class")
TABLE_SUFFIXES = (".txt", ".csv", ".tsv")
BEGIN, END, LOW, HIGH = "begin time (s)", "end time (s)", "low freq (hz)", "high freq (hz)"
BEGIN_PATH, BEGIN_FILE, FILE_OFFSET = "begin path", "begin file", "file offset (s)"


@dataclass(frozen=True)
class Box:
    """One Raven annotation: species ``code`` in ``recording`` from ``begin`` to ``end`` seconds (of that file)."""

    recording: Path
    begin: float
    end: float
    code: str
    low_hz: float | None = None
    high_hz: float | None = None


def read_clips(cfg: TrainConfig, problems: ProblemReport,
               taxonomy: dict[str, dict[str, str]] | None) -> tuple[list[Clip], dict[str, str]]:
    """The clips of the run's training input, whichever shape it has (module docstring), and the common names
    the input gives (BirdCLEF metadata only)."""
    if cfg.metadata is not None:
        return read_metadata(cfg.metadata, cfg.audio_root, problems, taxonomy=taxonomy, min_rating=cfg.min_rating)
    if cfg.species_dirs is not None:
        return read_species_dirs(cfg.species_dirs, problems, taxonomy), {}
    boxes = read_raven(cfg.raven, problems, taxonomy, top_hz=cfg.frontend.fmax)
    return raven_clips(boxes, cfg.frontend.window_s), {}


def load_clips(cfg: TrainConfig, cache: AudioCache, problems: ProblemReport, *,
               workers: int = 1) -> tuple[list[Clip], dict[str, str]]:
    """The run's usable clips: the training input read and checked (whatever its shape:
    :func:`read_clips`), every file decoded into ``cache``.

    Returns:
        tuple: the usable clips (input order) and the common names found in the input.
    """
    taxonomy = read_taxonomy(cfg.taxonomy) if cfg.taxonomy else None
    clips, names = read_clips(cfg, problems, taxonomy)
    files = list(dict.fromkeys(c.path for c in clips))
    usable = dict(zip(files, cache.prepare(files, problems, workers=workers, desc="decoding clips"), strict=True))
    kept = []
    for c in (c for c in clips if usable[c.path]):
        if c.span is not None and not len(c.samples(cache)):  # a box past the end of its recording
            problems.add("bad_row", c.path, f"{c.primary} at {c.span[0]:g}-{c.span[1]:g} s is past the recording's end")
            continue
        kept.append(c)
    return kept, names


def read_species_dirs(root: str | Path, problems: ProblemReport,
                      taxonomy: dict[str, dict[str, str]] | None = None) -> list[Clip]:
    """Every audio file of ``<root>/<code>/`` as a clip of ``<code>`` (a folder outside the taxonomy is
    reported and skipped).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no species folder holds audio.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"species folders: not a folder: {root}")
    clips: list[Clip] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if taxonomy is not None and folder.name not in taxonomy:
            problems.add("unknown_label", folder, f"species folder {folder.name!r} is not in the taxonomy")
            continue
        clips += [Clip(path=f, primary=folder.name) for f in list_audio_files(folder)]
    if not clips:
        raise ValueError(f"{root}: no audio in a species folder (expected {root}/<species code>/*.wav)")
    return clips


def _tables(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"Raven tables: no such file or folder: {path}")
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES)


def _rows(table: Path) -> list[dict[str, str]]:
    """A selection table's rows, keys lower-cased and stripped (Raven writes tab-separated text; CSV is read too)."""
    with open(table, newline="", encoding="utf-8-sig") as f:
        text = f.read()
    delimiter = "\t" if "\t" in text.partition("\n")[0] else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    return [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]


def _species_column(columns: Sequence[str], wanted: str | None, table: Path) -> str:
    options = (wanted.strip().lower(),) if wanted else SPECIES_COLUMNS
    found = next((c for c in options if c in columns), None)
    if found is None:
        raise ValueError(f"{table}: no species column (looked for {list(options)}, any case); found {list(columns)} "
                         "(set the Raven species column)")
    return found


def _recording(row: dict[str, str], table: Path, audio_dir: Path | None) -> Path | None:
    """The recording a row annotates: ``Begin Path``, else ``Begin File`` or the table's name in ``audio_dir``."""
    named = row.get(BEGIN_PATH) or row.get(BEGIN_FILE)
    if named:
        path = Path(named.replace("\\", "/"))
        if path.is_file():
            return path
        return audio_dir / path.name if audio_dir is not None and (audio_dir / path.name).is_file() else None
    stem = table.name.split(".Table")[0] if ".Table" in table.name else table.stem
    candidates = [audio_dir / f"{stem}{ext}" for ext in sorted(AUDIO_EXTENSIONS)] if audio_dir is not None else []
    return next((p for p in candidates if p.is_file()), None)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _box(row: dict[str, str], where: str, recording: Path, code: str, problems: ProblemReport) -> Box | None:
    begin, end = _number(row.get(BEGIN)), _number(row.get(END))
    if begin is None or end is None or end <= begin or begin < 0:
        problems.add("bad_row", where, f"begin/end times {row.get(BEGIN)!r}, {row.get(END)!r} are not a time span")
        return None
    offset = _number(row.get(FILE_OFFSET))
    start = offset if offset is not None and (row.get(BEGIN_PATH) or row.get(BEGIN_FILE)) else begin
    return Box(recording, start, start + end - begin, code, _number(row.get(LOW)), _number(row.get(HIGH)))


def _table_boxes(table: Path, cfg: RavenConfig, problems: ProblemReport,
                 taxonomy: dict[str, dict[str, str]] | None, top_hz: float) -> list[Box]:
    rows = _rows(table)
    if not rows:
        return []
    missing = [c for c in (BEGIN, END) if c not in rows[0]]
    if missing:
        raise ValueError(f"{table}: missing Raven column(s) {missing} (any case); found {list(rows[0])}")
    species = _species_column(list(rows[0]), cfg.species_column, table)
    if "view" in rows[0] and any(r["view"].lower().startswith("spectrogram") for r in rows):
        rows = [r for r in rows if r["view"].lower().startswith("spectrogram")]  # a box is listed once per view
    boxes = []
    for line, row in enumerate(rows, start=2):
        where, code = f"{table.name}:{line}", row.get(species, "")
        recording = _recording(row, table, cfg.audio_dir)
        if not code:
            problems.add("bad_row", where, f"empty {species!r}")
        elif taxonomy is not None and code not in taxonomy:
            problems.add("unknown_label", where, f"species {code!r} is not in the taxonomy")
        elif recording is None:
            problems.add("missing_file", where, "recording not found (Begin Path, Begin File or the table's name "
                                                "in the Raven audio folder)")
        elif (box := _box(row, where, recording, code, problems)) is not None:
            if box.low_hz is not None and box.low_hz >= top_hz:
                problems.add("bad_row", where, f"box from {box.low_hz:g} Hz is above the front end's {top_hz:g} Hz")
            else:
                boxes.append(box)
    return boxes


def read_raven(cfg: RavenConfig, problems: ProblemReport, taxonomy: dict[str, dict[str, str]] | None = None, *,
               top_hz: float = float("inf")) -> list[Box]:
    """The usable annotation boxes of the selection tables (duplicates of one box in several views once).

    Raises:
        FileNotFoundError: the tables do not exist.
        ValueError: a table lacks the time or species columns, or no box is usable.
    """
    tables = _tables(Path(cfg.tables))
    boxes = list(dict.fromkeys(b for t in tables for b in _table_boxes(t, cfg, problems, taxonomy, top_hz)))
    if not boxes:
        raise ValueError(f"{cfg.tables}: no usable annotation box in {len(tables)} Raven table(s) (see problems)")
    log.info("Raven tables: %d boxes of %d species in %d recordings", len(boxes), len({b.code for b in boxes}),
             len({b.recording for b in boxes}))
    return boxes


def _crop_span(box: Box, window_s: float) -> tuple[float, float]:
    """A window-long span centred on the box (the box itself when longer), starting at 0 or later."""
    if box.end - box.begin >= window_s:
        return box.begin, box.end
    start = max(0.0, (box.begin + box.end - window_s) / 2)
    return start, start + window_s


def raven_clips(boxes: Sequence[Box], window_s: float) -> list[Clip]:
    """One clip per box: its crop (:func:`_crop_span`), with the species of other boxes overlapping it as
    secondary labels."""
    clips = []
    for box in boxes:
        span = _crop_span(box, window_s)
        others = (b.code for b in boxes if b.recording == box.recording and b.code != box.code
                  and b.begin < span[1] and b.end > span[0])
        clips.append(Clip(path=box.recording, primary=box.code, secondary=tuple(dict.fromkeys(others)), span=span))
    return clips


def _free_starts(boxes: Sequence[Box], duration: float, window_s: float, margin: float) -> list[float]:
    """Starts of consecutive windows that overlap no box (widened by ``margin``)."""
    busy = sorted((b.begin - margin, b.end + margin) for b in boxes)
    starts = np.arange(0.0, duration - window_s + 1e-9, window_s)
    return [float(s) for s in starts if not any(a < s + window_s and s < e for a, e in busy)]


def raven_negatives(cfg: TrainConfig, cache: AudioCache, problems: ProblemReport) -> list[CachedStretch]:
    """Negative windows of the annotated recordings: at most ``raven.negatives_per_recording`` window-long
    stretches with no box, spread over each recording, at the cache's rate (nothing without ``raven``)."""
    from .pseudo_soundscapes import spread

    if cfg.raven is None or cfg.raven.negatives_per_recording == 0:
        return []
    boxes = read_raven(cfg.raven, ProblemReport(), top_hz=cfg.frontend.fmax)  # its problems are already reported
    by_file: dict[Path, list[Box]] = {}
    for box in boxes:
        by_file.setdefault(box.recording, []).append(box)
    windows, n = [], cfg.frontend.window_samples
    for file, file_boxes in sorted(by_file.items()):
        try:
            samples = cache.load(file)
        except (AudioError, OSError) as exc:
            problems.add("unreadable_audio", file, str(exc))
            continue
        starts = _free_starts(file_boxes, len(samples) / cache.sample_rate, cfg.frontend.window_s,
                              cfg.raven.negative_margin_s)
        for s in spread(starts, cfg.raven.negatives_per_recording):
            a = int(round(s * cache.sample_rate))
            windows.append(CachedStretch(cache, file, a, min(a + n, len(samples))))
    log.info("Raven negatives: %d windows with no box", len(windows))
    return windows
