"""The unit of work shared by both engines: analyse one file, write its outputs, return its record."""

from __future__ import annotations

import errno
import logging
import os
import time
from collections import Counter
from pathlib import Path, PurePosixPath

from model_store import VerifiedModel
from soundscape.audio import AudioError
from soundscape.inference import Engine

from .core import analyze_file
from .formats import write_outputs
from .settings import AnalyzeSettings

__all__ = ["DISK_FULL", "INPUT_CHANGED", "FileProcessor", "input_root"]

log = logging.getLogger(__name__)

DISK_FULL = "disk_full"  # error code of a file whose outputs did not fit (ENOSPC, EDQUOT, EFBIG): the run stops
INPUT_CHANGED = "input_changed"  # the file was changed or removed while it was read: nothing written
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _changed(task: dict) -> str | None:
    """Why the input is no longer the file that was listed (None: unchanged, or the task has no stat)."""
    if "size" not in task:
        return None
    try:
        st = os.stat(task["path"])
    except OSError as exc:
        return f"it vanished while being read ({exc.strerror})"
    if (st.st_size, st.st_mtime_ns) != (task["size"], task["mtime_ns"]):
        return "it changed while being read"
    return None


def input_root(path: str, rel: str) -> str:
    """The folder a file was found under: ``path`` less the folders of its output name ``rel``."""
    return str(Path(path).parents[len(PurePosixPath(rel).parts) - 1])


class FileProcessor:
    """One engine (1 runtime thread) that turns tasks into journal records.

    Used once per local worker process and once per Ray actor.

    Args:
        model (VerifiedModel): the verified model.
        settings (AnalyzeSettings): the run's settings.
    """

    def __init__(self, model: VerifiedModel, settings: AnalyzeSettings) -> None:
        self.engine = Engine(model, intra_op_threads=1, inter_op_threads=1, fft_workers=1)
        self.settings = settings
        self.options = settings.options()

    def __call__(self, task: dict) -> dict:
        """Analyse ``task`` (``path``, ``rel``, ``key``) and write its outputs under ``settings.out``.

        Returns:
            dict: the journal record; ``status`` is ``done`` or ``failed`` (with ``error_code`` and
            ``message``). Never raises for a bad file.
        """
        s = self.settings
        card = self.engine.card
        t0 = time.perf_counter()
        record = {"key": task["key"], "path": task["path"], "rel": task["rel"]}
        try:
            result = analyze_file(self.engine, task["path"], s)
            if (why := _changed(task)) is not None:
                return {**record, "status": "failed", "error_code": INPUT_CHANGED,
                        "message": f"{task['path']}: {why}; nothing written, run again to analyse it"}
            outputs, dets = write_outputs(Path(s.out) / task["rel"], task["path"], result, card, self.options,
                                          s.formats, s.embeddings, root=input_root(task["path"], task["rel"]))
        except AudioError as exc:
            if (why := _changed(task)) is not None:
                return {**record, "status": "failed", "error_code": INPUT_CHANGED, "message": f"{task['path']}: {why}"}
            return {**record, "status": "failed", "error_code": str(exc.code), "message": exc.message}
        except OSError as exc:
            if exc.errno in _FULL:
                return {**record, "status": "failed", "error_code": DISK_FULL,
                        "message": f"{task['path']}: output not written: {exc.strerror} under {s.out}"}
            if (why := _changed(task)) is not None:
                return {**record, "status": "failed", "error_code": INPUT_CHANGED, "message": f"{task['path']}: {why}"}
            return {**record, "status": "failed", "error_code": "io_error", "message": f"{task['path']}: {exc}"}
        except Exception as exc:  # a bug must not stop the run; the traceback goes to the log
            log.exception("%s: unexpected error", task["path"])
            return {**record, "status": "failed", "error_code": "internal_error",
                    "message": f"{task['path']}: {type(exc).__name__}: {exc}"}
        return {**record, "status": "done", "duration_s": result.audio.duration_s, "windows": len(result),
                "detections": dict(sorted(Counter(d.code for d in dets).items())),
                "outputs": [str(Path(p).relative_to(s.out)) for p in outputs],
                "seconds": round(time.perf_counter() - t0, 4)}
