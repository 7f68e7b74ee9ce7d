"""Running a batch analysis: find the files, skip finished ones, fan out to an engine, journal, summarise.

Both engines run :class:`~soundscape.analyze.worker.FileProcessor` on each pending file; only this
driver appends to the journal and writes the run-level files (``failures.csv``, ``submission.csv``,
``combined.*`` with ``--combine``, ``summary.json``), so the journal has one writer whatever the engine.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import multiprocessing as mp
import os
import queue
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from model_store import VerifiedModel
from soundscape import render
from soundscape.options import UnknownSpeciesError, resolve_species
from soundscape.postprocess import postprocess_report
from soundscape.runtimes import RuntimeUnavailableError, require

from .core import load_model
from .formats import SUFFIXES, TMP_MARK, write_atomic, write_combined
from .inputs import find_inputs
from .journal import Journal, file_key
from .settings import AnalyzeSettings
from .worker import DISK_FULL, FileProcessor

__all__ = ["FAILURES_FILE", "SUBMISSION_FILE", "SUMMARY_FILE", "run_analysis"]

log = logging.getLogger(__name__)

FAILURES_FILE = "failures.csv"
SUBMISSION_FILE = "submission.csv"
SUMMARY_FILE = "summary.json"
# One BLAS/OpenMP thread per worker: the workers are the parallelism, and the mel matmul's float sums
# then do not depend on the thread count, so local and Ray (which sets OMP_NUM_THREADS=1) agree bitwise.
_ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _worker_main(model: VerifiedModel, settings: AnalyzeSettings, tasks: mp.Queue, results: mp.Queue) -> None:
    """A local worker process: one session, tasks until the ``None`` sentinel."""
    logging.basicConfig(level=logging.WARNING)
    processor = FileProcessor(model, settings)
    for task in iter(tasks.get, None):
        results.put(processor(task))


def run_local(model: VerifiedModel, settings: AnalyzeSettings, tasks: list[dict]) -> Iterator[dict]:
    """The local engine: ``settings.workers`` processes, each with its own ONNX session.

    Yields:
        dict: one journal record per task, in completion order.

    Raises:
        RuntimeError: a worker process died (the records yielded so far are kept by the caller).
    """
    n = min(settings.workers, len(tasks))
    if n == 0:
        return
    ctx = mp.get_context("forkserver")
    task_q, result_q = ctx.Queue(), ctx.Queue()
    for t in tasks:
        task_q.put(t)
    for _ in range(n):
        task_q.put(None)
    procs = [ctx.Process(target=_worker_main, args=(model, settings, task_q, result_q), daemon=True)
             for _ in range(n)]
    saved = {k: os.environ.get(k) for k in _ONE_THREAD_ENV}
    os.environ.update(_ONE_THREAD_ENV)  # the forkserver (and so each worker) starts with this environment
    try:
        for p in procs:
            p.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        for _ in range(len(tasks)):
            while True:
                try:
                    yield result_q.get(timeout=1.0)
                    break
                except queue.Empty:
                    dead = [p for p in procs if p.exitcode not in (None, 0)]
                    if dead:
                        raise RuntimeError(f"a worker process died (exit code {dead[0].exitcode}); "
                                           "run again to resume") from None
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()


def _resolve_species(settings: AnalyzeSettings, model: VerifiedModel) -> AnalyzeSettings:
    """``species`` and ``species_list`` as the model's label codes (names resolved; the journal keys on them).

    Raises:
        ValueError: an unreadable species list, or species that name no label of the model.
    """
    requested = settings.requested_species()
    if requested is None:
        return settings
    try:
        codes = list(resolve_species(requested, model.card))
    except UnknownSpeciesError as exc:
        raise ValueError(str(exc)) from None
    return settings.model_copy(update={"species": codes})


def _check_settings(settings: AnalyzeSettings, model: VerifiedModel) -> None:
    if ("parquet" in settings.formats or settings.embeddings) and importlib.util.find_spec("pyarrow") is None:
        raise ValueError("--format parquet and --embeddings need pyarrow: pip install 'soundscape[batch]'")
    if settings.embeddings and model.card.embedding_output is None:
        raise ValueError(f"embeddings=True but {model.card.name} v{model.card.version} has no embedding output")
    try:
        require(model.card.runtime)
    except RuntimeUnavailableError as exc:
        raise ValueError(f"{model.card.name} v{model.card.version}: {exc}") from None


def _check_writable(out: Path) -> None:
    """Raises ValueError naming ``out`` when no file can be created in it (read-only, no permission)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=f".probe{TMP_MARK}"):
            pass
    except OSError as exc:
        raise ValueError(f"output folder {out} is not writable: {exc.strerror or exc}") from None


class RunStopped(RuntimeError):
    """The run stopped early (output disk full, the journal unwritable, a worker or the engine gone); what was
    journalled is kept and the next run finishes the rest."""


def _stopped(why: str, journal: Journal) -> RunStopped:
    done = sum(1 for r in journal.records.values() if r.get("status") == "done")
    return RunStopped(f"{why}; {done} file(s) finished and journalled in {journal.path} are kept: "
                      "run the same command again to finish the rest")


def _remove_stale_temps(out: Path) -> None:
    for p in out.rglob(f".*{TMP_MARK}*"):
        p.unlink(missing_ok=True)


def run_analysis(settings: AnalyzeSettings, *, progress: bool = True) -> dict:
    """Analyse every input file not yet finished, then write the run's summary.

    Args:
        settings (AnalyzeSettings): what to analyse and how.
        progress (bool): show a tqdm bar. (Default: ``True``)

    Returns:
        dict: the summary (also saved as ``OUT/summary.json``).

    Raises:
        ValueError: bad inputs or options (naming them).
        StoreError: the model cannot be loaded or verified.
    """
    t0 = time.perf_counter()
    out = Path(settings.out).resolve()
    settings = settings.model_copy(update={"out": out})
    model = load_model(settings)
    settings = _resolve_species(settings, model)
    _check_settings(settings, model)
    files = find_inputs(settings.inputs)
    _check_writable(out)
    _remove_stale_temps(out)
    journal = Journal(out)
    options = settings.result_options()

    keys: dict[str, str] = {}
    failures: dict[str, dict] = {}
    pending = []
    for f in files:
        try:
            st = os.stat(f.path)
            keys[f.path] = key = file_key(f.path, model.card, options)
        except OSError as exc:
            failures[f.path] = {"path": f.path, "error_code": "io_error", "message": f"{f.path}: {exc}"}
            continue
        if not (settings.resume and journal.done(key)):  # size and mtime: the worker checks them after reading
            pending.append({"path": f.path, "rel": f.rel, "key": key, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    skipped = len(keys) - len(pending)
    log.info("%d file(s): %d to analyse, %d already finished (journal %s)", len(files), len(pending), skipped,
             journal.path)

    analysed_s = _run_pending(model, settings, pending, journal, progress)
    wall = time.perf_counter() - t0
    try:
        return _finish(settings, model, files, keys, journal, failures, len(pending), skipped, analysed_s, wall)
    except OSError as exc:
        raise _stopped(f"the run's summary files could not be written under {out}: {exc.strerror or exc}",
                       journal) from None


def _records(model: VerifiedModel, settings: AnalyzeSettings, pending: list[dict]) -> Iterator[dict]:
    if settings.engine == "ray":
        from .ray_engine import run_ray  # ray is imported only here

        return run_ray(model, settings, pending)
    return run_local(model, settings, pending)


def _run_pending(model: VerifiedModel, settings: AnalyzeSettings, pending: list[dict], journal: Journal,
                 progress: bool) -> float:
    """Journal each pending file's record as it comes; seconds of audio analysed.

    Raises:
        RunStopped: the output disk is full, the journal cannot be written, or the engine failed.
    """
    analysed_s = 0.0
    records = _records(model, settings, pending)
    with tqdm(total=len(pending), unit="file", disable=not progress, desc="analyze") as bar:
        try:
            for rec in records:
                _journal(journal, rec)
                if rec["status"] == "done":
                    analysed_s += rec["duration_s"]
                else:
                    log.warning("%s", rec["message"])
                if rec.get("error_code") == DISK_FULL:
                    raise _stopped(f"stopped: the output disk is full (or over quota): {rec['message']}", journal)
                bar.update(1)
                bar.set_postfix(audio_h=f"{analysed_s / 3600:.2f}")
        except RunStopped:
            raise
        except Exception as exc:  # a worker process or Ray actor died, or Ray gave up on a task
            raise _stopped(f"stopped: {type(exc).__name__}: {exc}", journal) from None
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()
    return analysed_s


def _journal(journal: Journal, rec: dict) -> None:
    try:
        journal.append(rec)
    except OSError as exc:
        raise _stopped(f"stopped: the journal {journal.path} could not be written ({exc.strerror or exc})",
                       journal) from None


def _finish(settings: AnalyzeSettings, model: VerifiedModel, files: list, keys: dict[str, str], journal: Journal,
            failures: dict[str, dict], n_pending: int, skipped: int, analysed_s: float, wall: float) -> dict:
    out = Path(settings.out)
    done = []
    for f in files:
        rec = journal.records.get(keys.get(f.path, ""))
        if rec is None:
            continue
        if rec["status"] == "done":
            done.append((f, rec))
        else:
            failures[f.path] = rec
    failed_rows = [[r["path"], r["error_code"], r["message"]] for r in sorted(failures.values(),
                                                                            key=lambda r: r["path"])]
    fail_text = render.table(failed_rows, header=["path", "error_code", "message"])
    write_atomic(out / "failures.csv", lambda tmp: tmp.write_text(fail_text, encoding="utf-8"))
    if "birdclef" in settings.formats:
        parts = [(out / (f.rel + SUFFIXES["birdclef"])).read_text(encoding="utf-8") for f, _ in done]
        text = render.join_csv(render.birdclef_header(model.card, settings.species), parts)
        write_atomic(out / SUBMISSION_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    if settings.combine:
        write_combined(out, model.card, settings.formats, [(f.rel, rec["duration_s"]) for f, rec in done])
    per_species: Counter = Counter()
    for _, rec in done:
        per_species.update(rec["detections"])
    audio_s = sum(rec["duration_s"] for _, rec in done)
    summary = {
        "model": {"name": model.card.name, "version": model.card.version, "sha256": model.card.sha256},
        "postprocess": postprocess_report(model.card, settings.hop_s).model_dump(mode="json"),
        "engine": settings.engine,
        "workers": settings.workers,
        "files": {"found": len(files), "done": len(done), "analysed_this_run": n_pending,
                  "skipped_finished": skipped, "failed": len(failures)},
        "audio_hours": round(audio_s / 3600, 6),
        "audio_hours_this_run": round(analysed_s / 3600, 6),
        "detections_per_species": dict(sorted(per_species.items())),
        "failures": len(failures),
        "wall_s": round(wall, 3),
        "throughput_audio_min_per_s": round(analysed_s / 60 / wall, 3) if wall > 0 else None,
        "options": settings.result_options(),
    }
    text = json.dumps(summary, indent=2) + "\n"
    write_atomic(out / SUMMARY_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return summary
