"""The service's tables (``format=detections|raven|audacity|kaleidoscope``) and species named by name.

Each table is checked against the JSON answer for the same upload and options: the same (window, species,
probability) rows, the upload's name as the file, the model in every row; a batch's table is its files'
tables joined (Raven: one timeline).
"""

from __future__ import annotations

import csv
import io

import pytest

from .audio_files import wav

OPTS = {"threshold": 0.3}


def post(server, params: dict, *files: tuple[str, bytes], batch: bool = False):
    field = "files" if batch else "file"
    return server.client.post("/v1/predict/batch" if batch else "/v1/predict", params=params,
                              files=[(field, (name, data, "audio/wav")) for name, data in files])


def rows(text: str, delimiter: str = ",") -> list[dict]:
    return list(csv.DictReader(io.StringIO(text), delimiter=delimiter))


def expected(doc: dict) -> list[tuple[str, str, str]]:
    """(start, code, confidence) of every reported probability, by window then falling probability."""
    return [(f"{w['start_s']:.4f}", code, f"{p:.6f}") for w in doc["windows"]
            for code, p in sorted(w["probabilities"].items(), key=lambda kv: -kv[1])]


def test_tables_of_one_upload_hold_its_json_rows_with_names_and_model(server):
    upload = ("dawn.wav", wav(16.0, 16000))
    doc = post(server, OPTS, upload).json()
    want = expected(doc)
    assert want, "the tiny model should report something at 0.3"

    raven = post(server, {**OPTS, "format": "raven"}, upload)
    assert raven.status_code == 200 and raven.headers["content-type"].startswith("text/plain")
    assert raven.headers["x-model-name"] == "birds" and raven.headers["x-model-version"] == "1"
    table = rows(raven.text, "\t")
    assert [(r["Begin Time (s)"], r["Species Code"], r["Confidence"]) for r in table] == want
    assert {(r["Begin Path"], r["Begin File"], r["Model"], r["Model Version"]) for r in table} == {
        ("dawn.wav", "dawn.wav", "birds", "1")}
    assert all(r["File Offset (s)"] == r["Begin Time (s)"] and r["Common Name"] == r["Species Code"].upper()
               for r in table)

    det = rows(post(server, {**OPTS, "format": "detections"}, upload).text)
    assert [(f"{float(r['start_s']):.4f}", r["code"], r["confidence"]) for r in det] == want
    assert {(r["file"], r["model"], r["model_version"]) for r in det} == {("dawn.wav", "birds", "1")}

    kal = post(server, {**OPTS, "format": "kaleidoscope"}, upload)
    assert kal.headers["content-type"].startswith("text/csv")
    assert [(r["OFFSET"], r["MANUAL ID"], r["confidence"]) for r in rows(kal.text)] == want
    assert {(r["INDIR"], r["FOLDER"], r["IN FILE"], r["DURATION"]) for r in rows(kal.text)} == {
        ("", "", "dawn.wav", "5.0000")}

    labels = [line.split("\t") for line in post(server, {**OPTS, "format": "audacity"}, upload).text.splitlines()]
    assert [(f"{float(s):.4f}", lab.split(";")[1], lab.split(";")[2]) for s, _, lab in labels] == want


def test_species_are_named_by_code_or_common_name_in_any_case(server):
    upload = ("x.wav", wav(11.0, 16000))
    by_code = post(server, {"species": "comrav,amered"}, upload).json()
    by_name = post(server, {"species": ["COMRAV", "AmeRed"]}, upload).json()  # the tiny card's common names
    assert [w["probabilities"] for w in by_name["windows"]] == [w["probabilities"] for w in by_code["windows"]]
    assert list(by_name["summary"]) == ["comrav", "amered"]
    r = post(server, {"species": "amered,Dodo"}, upload)
    assert r.status_code == 422 and r.json()["error"] == "unknown_species" and "Dodo" in r.json()["detail"]


def test_a_batch_table_is_its_files_tables_joined_on_one_timeline(server):
    a, b = ("a.wav", wav(16.0, 16000)), ("b.wav", wav(11.0, 22050))
    broken = ("broken.wav", b"RIFF0000WAVEjunk")
    one = [post(server, {**OPTS, "format": "raven"}, f).text for f in (a, b)]
    joined = post(server, {**OPTS, "format": "raven"}, a, broken, b, batch=True)
    assert joined.status_code == 200 and '"broken.wav"' in joined.headers["x-failed-files"]
    table = rows(joined.text, "\t")
    parts = [rows(t, "\t") for t in one]
    assert [int(r["Selection"]) for r in table] == list(range(1, len(table) + 1))
    assert len(table) == sum(map(len, parts))
    shifted = [(float(r["Begin Time (s)"]), r["Begin Path"], r["File Offset (s)"], r["Species Code"]) for r in table]
    assert shifted == [(float(r["Begin Time (s)"]) + (16.0 if i else 0.0), r["Begin Path"], r["File Offset (s)"],
                        r["Species Code"]) for i, p in enumerate(parts) for r in p]  # b starts where a (16 s) ends

    kal = post(server, {**OPTS, "format": "kaleidoscope"}, a, b, batch=True).text
    singles = [post(server, {**OPTS, "format": "kaleidoscope"}, f).text for f in (a, b)]
    assert kal == singles[0] + "".join(s.split("\n", 1)[1] for s in singles[1:])


@pytest.mark.parametrize("fmt", ["audacity"])
def test_a_label_track_is_one_recordings(server, fmt):
    r = post(server, {"format": fmt}, ("a.wav", wav(6.0)), ("b.wav", wav(6.0)), batch=True)
    assert r.status_code == 422 and r.json()["error"] == "invalid_option"
