"""Labelled soundscapes for validation: per-window targets aligned with the front end's windows.

``soundscape_labels.csv`` has one row per labelled window: ``row_id`` (``<soundscape_id>_<end_time>``),
``soundscape_id``, ``end_time`` (the window's end, seconds) and ``birds`` (space-separated codes, or
``nocall``). Each recording ``<soundscapes_dir>/<soundscape_id>.<ext>`` is decoded (through the
:class:`~training.data.AudioCache`) and cut by :meth:`soundscape.audio.Frontend.windows`, i.e. exactly the
windows the service scores; a window is kept when a label row ends where it ends.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundscape.audio import AudioError, Frontend, FrontendConfig

from .data import AudioCache, ProblemReport, list_audio_files, read_csv_rows

__all__ = ["SoundscapeSet", "load_soundscapes"]

log = logging.getLogger(__name__)

NOCALL = "nocall"


@dataclass(frozen=True)
class SoundscapeSet:
    """Labelled windows of the validation soundscapes.

    Attributes:
        windows (np.ndarray): ``(n_windows, window_samples)`` float32 audio.
        targets (np.ndarray): ``(n_windows, n_classes)`` float32, 1 where a species is labelled.
        row_ids (list[str]): ``<soundscape_id>_<end_time>`` per window.
        soundscape_ids (list[str]): the recording of each window.
        end_s (np.ndarray): ``(n_windows,)`` window ends, seconds.
    """

    windows: np.ndarray
    targets: np.ndarray
    row_ids: list[str]
    soundscape_ids: list[str]
    end_s: np.ndarray

    def __len__(self) -> int:
        return len(self.row_ids)

    @property
    def n_soundscapes(self) -> int:
        return len(set(self.soundscape_ids))


def _key(seconds: float) -> int:
    return int(round(float(seconds) * 1000))  # ms: 5, 5.0 and 5.000 are the same window


def load_soundscapes(labels_csv: str | os.PathLike, audio_dir: str | os.PathLike, codes: Sequence[str],
                     frontend: FrontendConfig, cache: AudioCache, problems: ProblemReport) -> SoundscapeSet:
    """Per-window audio and targets of the labelled soundscapes.

    Args:
        labels_csv (path): ``soundscape_labels.csv``.
        audio_dir (path): folder of the recordings.
        codes (Sequence[str]): class codes, in output order; other codes are reported and ignored.
        frontend (FrontendConfig): windowing policy and sample rate.
        cache (AudioCache): decoded-audio cache at ``frontend.sample_rate``.
        problems (ProblemReport): collects missing or unreadable recordings, unknown codes, bad rows.

    Returns:
        SoundscapeSet: the labelled windows, in file then time order.

    Raises:
        ValueError: the CSV lacks columns, or no labelled window is usable.
    """
    labels_csv = Path(labels_csv)
    rows = read_csv_rows(labels_csv, ["soundscape_id", "end_time", "birds"])
    index = {c: i for i, c in enumerate(codes)}
    files = {p.stem: p for p in list_audio_files(audio_dir)}
    labels: dict[str, dict[int, tuple[str, np.ndarray]]] = {}
    for line, row in enumerate(rows, start=2):
        where = f"{labels_csv.name}:{line}"
        sid = row["soundscape_id"].strip()
        try:
            end = float(row["end_time"])
        except ValueError:
            problems.add("bad_row", where, f"end_time {row['end_time']!r} is not a number")
            continue
        target = np.zeros(len(codes), dtype=np.float32)
        birds = [b for b in (row["birds"] or "").split() if b != NOCALL]
        unknown = [b for b in birds if b not in index]
        if unknown:
            problems.add("unknown_label", where, f"code(s) {unknown} are not model classes; ignored")
        for b in birds:
            if b in index:
                target[index[b]] = 1.0
        row_id = (row.get("row_id") or "").strip() or f"{sid}_{end:g}"
        labels.setdefault(sid, {})[_key(end)] = (row_id, target)

    fe = Frontend(frontend)
    windows, targets, row_ids, sids, ends = [], [], [], [], []
    for sid in sorted(labels):
        path = files.get(sid)
        if path is None:
            problems.add("missing_file", Path(audio_dir) / f"{sid}.*", "no recording for this soundscape_id")
            continue
        try:
            samples = cache.load(path)
        except (AudioError, OSError) as exc:
            problems.add("unreadable_audio", path, str(exc))
            continue
        cut = fe.windows(np.asarray(samples))
        wanted = labels[sid]
        matched = set()
        for i, end in enumerate(cut.ends_s):
            hit = wanted.get(_key(end))
            if hit is None:
                continue
            matched.add(_key(end))
            windows.append(cut.samples[i])
            targets.append(hit[1])
            row_ids.append(hit[0])
            sids.append(sid)
            ends.append(float(end))
        for key in sorted(set(wanted) - matched):
            problems.add("bad_row", wanted[key][0], f"no window of {path.name} ends at {key / 1000:g} s")
    if not windows:
        raise ValueError(f"{labels_csv}: no labelled soundscape window could be used (see problems)")
    log.info("validation soundscapes: %d windows from %d recordings", len(windows), len(set(sids)))
    return SoundscapeSet(windows=np.stack(windows), targets=np.stack(targets), row_ids=row_ids,
                         soundscape_ids=sids, end_s=np.asarray(ends))
