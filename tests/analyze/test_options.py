"""``soundscape analyze``'s options from BirdNET-Analyzer's world: ``--species-list``, species by name,
``--combine``, Raven tables that open the recordings, Kaleidoscope CSV.

Raven is checked against Raven Pro's selection-table layout, written out here: tab-separated, the standard
columns ``Selection, View, Channel, Begin Time (s), End Time (s), Low Freq (Hz), High Freq (Hz)``, and the
measurements ``Begin Path`` (the sound file's full path) and ``File Offset (s)`` (the selection's start within
that file) that let Raven open the file at the selection; in a table of several files ``Begin Time (s)`` is on
the files' joined timeline, so it is the file offset plus the durations of the files before. Kaleidoscope's
CSV locates events with ``INDIR, FOLDER, IN FILE, CHANNEL, OFFSET, DURATION`` (its order) and labels them in
``MANUAL ID``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import soundfile as sf

from .conftest import run_cli

RAVEN_STANDARD = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)"]
KALEIDOSCOPE = ["INDIR", "FOLDER", "IN FILE", "CHANNEL", "OFFSET", "DURATION", "MANUAL ID"]
FORMATS = ["csv", "parquet", "raven", "kaleidoscope", "audacity", "birdclef"]


def table(path: Path, delimiter: str = ",") -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text()), delimiter=delimiter))


@pytest.fixture(scope="module")
def combined(store_root, recordings, tmp_path_factory) -> tuple[Path, dict, Path]:
    out = tmp_path_factory.mktemp("combined")
    species = tmp_path_factory.mktemp("species-list") / "species.txt"
    species.write_text("# site 7\nCOMRAV\namered   # the tiny card's common names are its codes upper-cased\n")
    run = run_cli(str(recordings), "--out", str(out), "--store", str(store_root), "--workers", "1",
                  "--no-progress", "--threshold", "0.2", "--format", *FORMATS, "--species", "houspa",
                  "--species-list", str(species), "--combine")
    assert run.returncode == 1, run.stderr  # broken.wav fails; the run goes on
    return out, json.loads((out / "summary.json").read_text()), species


def finished(out: Path) -> list[tuple[str, float]]:
    """(output name, duration) of the finished files, in the run's order."""
    records = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    return sorted((r["rel"], r["duration_s"]) for r in records if r["status"] == "done")


def test_species_list_and_names_resolve_to_codes(combined):
    _, summary, _ = combined
    assert summary["options"]["species"] == ["houspa", "comrav", "amered"]


def test_unknown_names_and_empty_lists_stop_the_run_in_one_line(store_root, recordings, tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text("amered\nDodo bird\n")
    run = run_cli(str(recordings), "--out", str(tmp_path / "o"), "--store", str(store_root), "--species-list",
                  str(listed))
    assert run.returncode == 2 and "Dodo bird" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    listed.write_text("# nothing\n")
    run = run_cli(str(recordings), "--out", str(tmp_path / "o"), "--store", str(store_root), "--species-list",
                  str(listed))
    assert run.returncode == 2 and "lists no species" in run.stderr


def test_combined_tables_are_the_files_tables_joined(combined):
    out, _, _ = combined
    rels = [rel for rel, _ in finished(out)]
    assert len(rels) == 3
    for suffix in (".detections.csv", ".kaleidoscope.csv"):
        parts = [(out / (rel + suffix)).read_text() for rel in rels]
        whole = (out / ("combined" + suffix)).read_text()
        assert whole == parts[0] + "".join(p.split("\n", 1)[1] for p in parts[1:])
    parquet = pq.read_table(out / "combined.detections.parquet").to_pylist()
    assert parquet == [r for rel in rels for r in pq.read_table(out / (rel + ".detections.parquet")).to_pylist()]
    assert not (out / "combined.labels.txt").exists() and not (out / "combined.submission.csv").exists()


def test_combined_raven_table_opens_each_recording_at_its_detections(combined, recordings):
    out, _, _ = combined
    done = finished(out)
    whole = table(out / "combined.selections.txt", "\t")
    header = (out / "combined.selections.txt").read_text().splitlines()[0].split("\t")
    assert header[:7] == RAVEN_STANDARD and {"Begin Path", "File Offset (s)"} <= set(header)
    assert [int(r["Selection"]) for r in whole] == list(range(1, len(whole) + 1))
    offset, expected = 0.0, []
    for rel, duration in done:
        for r in table(out / (rel + ".selections.txt"), "\t"):
            assert r["Begin Time (s)"] == r["File Offset (s)"]  # one file's table: its own timeline
            expected.append({**r, "Begin Time (s)": f"{float(r['Begin Time (s)']) + offset:.4f}",
                             "End Time (s)": f"{float(r['End Time (s)']) + offset:.4f}"})
        offset += duration
    assert [{k: v for k, v in r.items() if k != "Selection"} for r in whole] == [
        {k: v for k, v in r.items() if k != "Selection"} for r in expected]
    for r in whole:
        path = Path(r["Begin Path"])
        assert path.is_absolute() and path.is_file() and path.is_relative_to(recordings)
        assert r["Begin File"] == path.name
        assert 0 <= float(r["File Offset (s)"]) < sf.info(path).duration
        assert (r["Model"], r["Model Version"]) == ("birds", "1") and r["Common Name"] == r["Species Code"].upper()


def test_kaleidoscope_csv_locates_events_under_the_folder_analysed(combined, recordings):
    out, _, _ = combined
    text = (out / "site2" / "night.kaleidoscope.csv").read_text()
    assert text.splitlines()[0].split(",")[:7] == KALEIDOSCOPE
    rows = table(out / "site2" / "night.kaleidoscope.csv")
    assert rows and {(r["INDIR"], r["FOLDER"], r["IN FILE"], r["CHANNEL"]) for r in rows} == {
        (str(recordings), "site2", "night.ogg", "0")}
    assert {r["MANUAL ID"] for r in rows} <= {"houspa", "comrav", "amered"}
    assert all(float(r["DURATION"]) == 5.0 and float(r["confidence"]) >= 0.2 for r in rows)


def test_a_resumed_run_rebuilds_the_same_combined_tables(combined, store_root, recordings):
    out, _, species = combined
    before = {p.name: p.read_bytes() for p in out.glob("combined.*")}
    run = run_cli(str(recordings), "--out", str(out), "--store", str(store_root), "--workers", "1",
                  "--no-progress", "--threshold", "0.2", "--format", *FORMATS, "--species", "houspa",
                  "--species-list", str(species), "--combine")
    assert json.loads(run.stdout)["files"]["skipped_finished"] == 3
    assert {p.name: p.read_bytes() for p in out.glob("combined.*")} == before
