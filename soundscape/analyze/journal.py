"""The per-run journal: which files are finished, so a killed or repeated run never redoes them.

``OUT/journal.jsonl`` gets one JSON line per finished or failed file, appended with a single ``write``
on an ``O_APPEND`` descriptor and fsynced. A line is written only after the file's outputs were renamed
into place, so a line means complete outputs; a kill mid-line leaves a partial last line, which loading
ignores (the next record then starts a new line; a line cut by a full disk is the same). A file's key
hashes its path, size, mtime, the model (name, version, sha256, and the card's smoothing when it has one)
and the options that change its outputs, so editing a recording or changing the model, its smoothing or
``--threshold`` redoes it. (The option key was ``min_conf`` before the
options were shared with the service: files finished by such a run are analysed again, once.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from model_store import ModelCard

__all__ = ["JOURNAL_FILE", "Journal", "file_key"]

log = logging.getLogger(__name__)

JOURNAL_FILE = "journal.jsonl"


def file_key(path: str, card: ModelCard, options: dict) -> str:
    """The journal key of one input file under one model and option set.

    Raises:
        OSError: the file cannot be stat-ed.
    """
    st = os.stat(path)
    ident = {"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "model": card.name,
             "version": card.version, "sha256": card.sha256, "options": options}
    if card.postprocess.smoothing != "none":  # only then, so keys of runs without smoothing are unchanged
        ident["postprocess"] = card.postprocess.model_dump(mode="json")
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


class Journal:
    """Append-only record of a run's files, keyed by :func:`file_key`.

    Args:
        out (Path): the run's output folder; the journal is ``out/journal.jsonl``.
    """

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / JOURNAL_FILE
        self.records: dict[str, dict] = {}
        self._cut = False  # the last line was cut (a kill or a full disk): the next record starts a new line
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        bad = 0
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                self._cut = not line.endswith("\n")
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    self.records[rec["key"]] = rec
                except (ValueError, KeyError, TypeError):
                    bad += 1  # a line cut by a kill: that file was not finished
        if bad:
            log.warning("%s: ignored %d incomplete line(s)", self.path, bad)

    def done(self, key: str) -> dict | None:
        """The record of a finished (not failed) file, or None."""
        rec = self.records.get(key)
        return rec if rec and rec.get("status") == "done" else None

    def append(self, record: dict) -> None:
        """Record one file (``record["key"]`` set) durably, in one atomic append."""
        line = (("\n" if self._cut else "") + json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            self._cut = True  # until the whole line is on disk
            view = memoryview(line)
            while view:  # a short write (disk full) is followed by one that raises
                view = view[os.write(fd, view):]
            os.fsync(fd)
            self._cut = False
        finally:
            os.close(fd)
        self.records[record["key"]] = record
