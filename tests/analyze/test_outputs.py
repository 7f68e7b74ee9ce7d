"""Every output format parses and agrees with the service's answer for the same file and options.

Raven and Audacity files are checked against the tools' published layouts, written out here literally:
Raven Pro's selection table is tab-separated with the header ``Selection, View, Channel, Begin Time (s),
End Time (s), Low Freq (Hz), High Freq (Hz)`` followed by annotation columns; an Audacity label track is
``start<TAB>end<TAB>label`` lines without a header.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from model_store import ModelStore
from soundscape.analyze import AnalyzeSettings, run_analysis
from soundscape.audio import AudioErrorCode, decode
from soundscape.inference import Engine
from tests.utils.server import Server

from .conftest import output_files

FILES = {"dawn_01": "dawn_01.wav", "dawn_02": "dawn_02.flac", "site2/night": "site2/night.ogg"}
SPECIES = ["amered", "comrav", "houspa"]
MIN_CONF, TOP_K = 0.45, 2


@pytest.fixture(scope="module")
def service(store_root, tmp_path_factory) -> Iterator[Server]:
    """The HTTP service (a real uvicorn process) on the same tiny store."""
    srv = Server(tmp_path_factory.mktemp("analyze-service"), store_root)
    yield srv
    srv.stop()


RAVEN_STANDARD = "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)"


def reference(service: Server, store_root: Path, path: Path, **params) -> tuple[dict, np.ndarray]:
    """The service's ``/v1/predict`` JSON for ``path``, and ``Engine.predict`` embeddings (the service
    does not return embeddings)."""
    r = service.client.post("/v1/predict", params=params,
                            files={"file": (path.name, path.read_bytes(), "application/octet-stream")})
    assert r.status_code == 200, r.text
    model = ModelStore(store_root).load("birds")
    pred = Engine(model).predict(decode(path, sample_rate=model.card.frontend.sample_rate), embeddings=True)
    return r.json(), pred.embeddings


def expected_detections(doc: dict) -> list[tuple[str, str, float]]:
    """(row_id, code, confidence) the filters must keep: species, then threshold, then top-k per window."""
    out = []
    for w in doc["windows"]:
        kept = sorted(((p, c) for c, p in w["probabilities"].items() if c in SPECIES and p >= MIN_CONF),
                      key=lambda pc: -pc[0])[:TOP_K]
        out += [(w["row_id"], c, p) for p, c in kept]
    return out


def assert_detections(rows: list[tuple[str, str, float]], doc: dict) -> None:
    want = expected_detections(doc)
    assert [(r, c) for r, c, _ in rows] == [(r, c) for r, c, _ in want]
    np.testing.assert_allclose([p for *_, p in rows], [p for *_, p in want], atol=3e-6)


@pytest.fixture(scope="module")
def run(store_root, recordings, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("analyze-out")
    settings = AnalyzeSettings(inputs=[str(recordings)], out=out, store=store_root, workers=2,
                               formats=["csv", "parquet", "birdclef", "raven", "audacity", "json"],
                               embeddings=True, species=SPECIES, threshold=MIN_CONF, top_k=TOP_K)
    return out, run_analysis(settings, progress=False)


def test_summary_and_failures(run, recordings):
    out, summary = run
    assert summary["files"] == {"found": 4, "done": 3, "analysed_this_run": 4, "skipped_finished": 0, "failed": 1}
    assert json.loads((out / "summary.json").read_text()) == summary
    with open(out / "failures.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [str(recordings / "broken.wav")]
    assert rows[0]["error_code"] in set(AudioErrorCode)
    assert "broken.wav" in rows[0]["message"]
    assert summary["audio_hours"] == pytest.approx((23.1 + 30 + 12) / 3600, abs=1e-5)
    assert sum(summary["detections_per_species"].values()) > 0


@pytest.mark.parametrize("rel", sorted(FILES))
def test_every_format_agrees_with_the_service(run, recordings, store_root, service, rel):
    out, _ = run
    source = recordings / FILES[rel]
    doc, embeddings = reference(service, store_root, source)
    base = out / rel

    # JSON: the service's answer for the same options, identical but for the timings (zero in a file)
    filtered, _ = reference(service, store_root, source, species=SPECIES, threshold=MIN_CONF, top_k=TOP_K)
    got = json.loads(Path(f"{base}.json").read_text())
    assert set(got.pop("timings").values()) == {0} and set(filtered.pop("timings")) == {
        "decode_ms", "frontend_ms", "model_ms", "total_ms"}
    assert got == filtered

    with open(f"{base}.detections.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(r["file"] == str(source) for r in rows)
    assert_detections([(r["row_id"], r["code"], float(r["confidence"])) for r in rows], doc)
    starts = {w["row_id"]: (w["start_s"], w["end_s"]) for w in doc["windows"]}
    assert all((float(r["start_s"]), float(r["end_s"])) == starts[r["row_id"]] for r in rows)

    table = pq.read_table(f"{base}.detections.parquet").to_pylist()
    assert [(r["row_id"], r["code"]) for r in table] == [(r["row_id"], r["code"]) for r in rows]
    assert_detections([(r["row_id"], r["code"], r["confidence"]) for r in table], doc)

    text = Path(f"{base}.selections.txt").read_text()
    assert text.splitlines()[0] == RAVEN_STANDARD + ("\tBegin Path\tFile Offset (s)\tBegin File\tSpecies Code"
                                                     "\tCommon Name\tConfidence\tModel\tModel Version")
    assert all(line.count("\t") == 14 for line in text.splitlines())
    raven = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
    assert {(r["View"], r["Channel"], r["Low Freq (Hz)"], r["High Freq (Hz)"]) for r in raven} == {
        ("Spectrogram 1", "1", "50", "8000")}  # the tiny front end's band
    assert [int(r["Selection"]) for r in raven] == list(range(1, len(raven) + 1))
    assert {(r["Begin Path"], r["Begin File"], r["Model"], r["Model Version"]) for r in raven} <= {
        (str(source), source.name, "birds", "1")}  # Raven opens the recording itself ...
    assert all(r["File Offset (s)"] == r["Begin Time (s)"] for r in raven)  # ... at the detection
    by_start = {w["start_s"]: w["row_id"] for w in doc["windows"]}
    assert_detections([(by_start[float(r["Begin Time (s)"])], r["Species Code"], float(r["Confidence"]))
                       for r in raven], doc)

    labels = [line.split("\t") for line in Path(f"{base}.labels.txt").read_text().splitlines()]
    assert all(len(parts) == 3 and float(parts[0]) < float(parts[1]) for parts in labels)  # no header line
    assert len(labels) == len(raven)
    assert_detections([(by_start[float(s)], lab.split(";")[1], float(lab.split(";")[2])) for s, _, lab in labels],
                      doc)
    assert all(lab.split(";")[0] == lab.split(";")[1].upper() for _, _, lab in labels)  # the tiny card's common names

    with open(f"{base}.submission.csv", newline="") as f:
        sub = list(csv.DictReader(f))
    assert [r["row_id"] for r in sub] == [w["row_id"] for w in doc["windows"]]
    assert list(sub[0]) == ["row_id", *SPECIES]  # every window, the requested species, no threshold
    np.testing.assert_allclose([[float(r[c]) for c in SPECIES] for r in sub],
                               [[w["probabilities"][c] for c in SPECIES] for w in doc["windows"]], atol=1.5e-6)

    emb = pq.read_table(f"{base}.embeddings.parquet")
    assert emb.column("row_id").to_pylist() == [w["row_id"] for w in doc["windows"]]
    np.testing.assert_allclose(np.asarray(emb.column("embedding").to_pylist()), embeddings, atol=1e-5)


def test_run_submission_concatenates_files_in_order(run):
    out, _ = run
    whole = (out / "submission.csv").read_text().splitlines()
    parts = [(out / f"{rel}.submission.csv").read_text().splitlines() for rel in sorted(FILES)]
    assert whole == parts[0][:1] + [line for p in parts for line in p[1:]]


def test_second_run_skips_finished_files_and_changes_nothing(run, store_root, recordings):
    out, first = run
    before = output_files(out)
    settings = AnalyzeSettings(inputs=[str(recordings)], out=out, store=store_root, workers=2,
                               formats=["csv", "parquet", "birdclef", "raven", "audacity", "json"],
                               embeddings=True, species=SPECIES, threshold=MIN_CONF, top_k=TOP_K)
    again = run_analysis(settings, progress=False)
    assert again["files"]["skipped_finished"] == 3
    assert again["files"]["analysed_this_run"] == 1  # only the failed file is retried
    assert output_files(out) == before
