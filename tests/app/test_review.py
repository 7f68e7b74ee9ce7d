"""The web page's endpoints against a real server: /v1/review answers what /v1/predict answers (result, limits,
error codes) plus the spectrogram, from one pass; downloads are the renderers' bytes; progress, curves, the
pages and the offline docs."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import numpy as np
import pytest

from app.review import ProgressBoard, ResultCache
from model_store import ModelStore
from soundscape.pipeline import Prediction
from tests.utils.models import DEFAULT_CODES, make_store, tiny_card, tiny_frontend

from .audio_files import wav

RAW = {"Content-Type": "audio/wav"}


def _without_timings(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "timings"}


def _upload(name: str, data: bytes) -> dict:
    return {"files": {"file": (name, data, "audio/wav")}}


@pytest.mark.parametrize("params", [{}, {"hop_s": 2.5}, {"threshold": 0.4, "top_k": 2, "species": "comrav,amered"}])
def test_review_result_is_the_predict_answer_plus_the_spectrogram(server, params):
    data = wav(21.0, 22050)
    predicted = server.client.post("/v1/predict", params=params, **_upload("site 7.wav", data)).json()
    r = server.client.post("/v1/review", params=params, **_upload("site 7.wav", data))
    assert r.status_code == 200, r.text
    body = r.json()
    assert _without_timings(body["result"]) == _without_timings(predicted)
    assert body["filename"] == "site 7.wav" and body["expires_in_s"] == 900
    assert re.fullmatch(r"[A-Za-z0-9_-]{16,64}", body["result_id"])
    species = params.get("species", "").split(",") if "species" in params else DEFAULT_CODES
    assert [label["code"] for label in body["labels"]] == species
    spec = body["spectrogram"]
    fe = tiny_frontend()
    assert spec["source"] == "model_frontend" and "What the model saw" in spec["description"]
    assert spec["height"] == fe.n_mels == len(spec["frequencies_hz"])
    assert spec["seconds_per_column"] == pytest.approx(fe.hop_length / fe.sample_rate)
    last_end = predicted["windows"][-1]["end_s"]
    assert spec["duration_s"] == pytest.approx(max(21.0, last_end), abs=spec["seconds_per_column"])
    png = base64.b64decode(spec["png_base64"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == spec["width"]


@pytest.mark.parametrize(("kwargs", "params"), [
    ({"content": b"RIFF\x00\x00\x00\x00WAVEjunk" * 50, "headers": RAW}, {}),
    ({"content": b"", "headers": RAW}, {}),
    ({"files": {"file": ("notes.txt", b"hello", "text/plain")}}, {}),
    ({"content": b"x" * 8_000_001, "headers": RAW}, {}),
    ({"content": wav(130.0, 8000, subtype="PCM_U8"), "headers": RAW}, {}),
    ({"files": {"other": ("x.wav", b"RIFF", "audio/wav")}}, {}),
    ({"content": wav(6.0), "headers": RAW}, {"hop_s": 0.5}),
    ({"content": wav(6.0), "headers": RAW}, {"min_conf": 0.5}),
    ({"content": wav(6.0), "headers": RAW}, {"species": "nosuch"}),
], ids=["corrupt", "empty", "text", "too-many-bytes", "too-long", "no-file-field", "short-hop", "unknown-option",
        "unknown-species"])
def test_review_has_the_limits_and_error_codes_of_predict(server, kwargs, params):
    expected = server.client.post("/v1/predict", params=params, **kwargs)
    got = server.client.post("/v1/review", params=params, **kwargs)
    assert expected.status_code >= 400
    assert (got.status_code, got.json()["error"]) == (expected.status_code, expected.json()["error"]), got.text


def _rows(text: str, delimiter: str = ",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(text), delimiter=delimiter))


def test_downloads_are_the_renderers_output_for_the_kept_result(server):
    data = wav(16.0, 16000)
    upload = _upload("dawn.wav", data)
    rid = server.client.post("/v1/review", **upload).json()["result_id"]

    def get(fmt: str, **params):
        r = server.client.get(f"/v1/review/{rid}/download", params={"format": fmt, **params})
        assert r.status_code == 200, r.text
        return r

    birdclef = get("birdclef")
    assert birdclef.text == server.client.post("/v1/predict", params={"format": "csv"}, **upload).text
    assert birdclef.headers["content-disposition"] == 'attachment; filename="dawn.submission.csv"'
    assert birdclef.headers["content-type"].startswith("text/csv")
    filtered = server.client.post("/v1/predict", params={"threshold": 0.3}, **upload).json()
    as_json = get("json", threshold=0.3)
    assert json.loads(as_json.text) == filtered | {"timings": dict.fromkeys(filtered["timings"], 0.0)}
    expected = [(f"{w['start_s']:.4f}", f"{w['end_s']:.4f}", code, f"{p:.6f}")
                for w in filtered["windows"]
                for code, p in sorted(w["probabilities"].items(), key=lambda kv: -kv[1])]
    raven = _rows(get("raven", threshold=0.3).text, "\t")
    assert raven[0][:3] == ["Selection", "View", "Channel"] and len(raven) - 1 == len(expected)
    assert [(r[3], r[4], r[10], r[12]) for r in raven[1:]] == expected
    assert {(r[7], r[8], r[9]) for r in raven[1:]} == {("dawn.wav", r[3], "dawn.wav") for r in raven[1:]}
    detections = _rows(get("csv", threshold=0.3).text)
    assert [(r[4], r[7]) for r in detections[1:]] == [(e[2], e[3]) for e in expected]
    audacity = _rows(get("audacity", threshold=0.3).text, "\t")
    assert [r[2].split(";", 1)[1] for r in audacity] == [f"{e[2]};{e[3]}" for e in expected]
    kaleidoscope = _rows(get("kaleidoscope", threshold=0.3).text)
    assert [(r[2], r[4], r[6], r[9]) for r in kaleidoscope[1:]] == [("dawn.wav", e[0], e[2], e[3]) for e in expected]


@pytest.mark.parametrize(("path", "params", "status", "code"), [
    ("/v1/review/AAAAAAAAAAAAAAAAAAAAAAAA/download", {}, 404, "result_not_found"),
    ("/v1/review/short/download", {}, 422, "invalid_request"),
    ("/v1/review/{rid}/download", {"format": "xml"}, 422, "invalid_request"),
    ("/v1/review/{rid}/download", {"hop_s": 1}, 422, "invalid_option"),
    ("/v1/review/{rid}/download", {"species": "nosuch"}, 422, "unknown_species"),
    ("/v1/review/progress/unknown-token", {}, 404, "progress_not_found"),
    ("/v1/review/progress/bad", {}, 422, "invalid_request"),
])
def test_download_and_progress_errors(server, path, params, status, code):
    rid = server.client.post("/v1/review", content=wav(6.0), headers=RAW).json()["result_id"]
    r = server.client.get(path.format(rid=rid), params=params)
    assert (r.status_code, r.json()["error"]) == (status, code), r.text


def test_progress_reports_windows(server):
    token = "test-progress-0001"
    r = server.client.post("/v1/review", params={"progress": token}, content=wav(40.0), headers=RAW)
    assert r.status_code == 200, r.text
    progress = server.client.get(f"/v1/review/progress/{token}").json()
    assert progress == {"stage": "done", "fraction": 1.0, "windows_done": 8, "windows_total": 8, "error": None}
    failed = "test-progress-0002"
    server.client.post("/v1/review", params={"progress": failed}, content=b"RIFFjunk" * 10, headers=RAW)
    assert server.client.get(f"/v1/review/progress/{failed}").json()["stage"] == "failed"


def test_waveform_models_get_a_display_logmel(make_server, tmp_path):
    make_store(tmp_path / "waveform-store", kind="waveform")
    srv = make_server(store=tmp_path / "waveform-store")
    r = srv.client.post("/v1/review", content=wav(12.0, 16000), headers=RAW)
    assert r.status_code == 200, r.text
    spec = r.json()["spectrogram"]
    assert spec["source"] == "display_logmel" and "takes raw audio" in spec["description"]
    assert spec["height"] == 128 and spec["frequencies_hz"][-1] < 8000


def test_training_curves(server):
    r = server.client.get("/v1/models/1/curves")
    assert (r.status_code, r.json()["error"]) == (404, "no_curves")
    assert server.client.get("/v1/models/9/curves").json()["error"] == "model_not_found"
    folder = ModelStore(server.store).version_dir("birds", 1)
    (folder / "metrics.csv").write_text("epoch,train_loss,macro_roc_auc\n1,0.9,0.5\n2,0.4,nan\n")
    try:
        curves = server.client.get("/v1/models/1/curves").json()
    finally:
        (folder / "metrics.csv").unlink()
    assert curves == {"name": "birds", "version": 1, "x": "epoch",
                      "series": {"epoch": [1.0, 2.0], "train_loss": [0.9, 0.4], "macro_roc_auc": [0.5, None]}}


def test_pages_and_offline_docs_are_served_from_the_package(server):
    page = server.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'src="static/ui/review.js"' in page.text and "http" not in page.text.split("<body", 1)[0]
    assert server.client.get("/model").status_code == 200
    for asset in ("review.js", "api.js", "plot.js", "util.js", "recorder.js", "recorder-worklet.js", "model.js",
                  "app.css", "favicon.svg"):
        assert server.client.get(f"/static/ui/{asset}").status_code == 200, asset
    for path, asset in (("/docs", "/static/docs/swagger-ui-bundle.js"), ("/redoc", "/static/docs/redoc.standalone.js")):
        html = server.client.get(path).text
        assert asset in html and not re.search(r"(src|href)=\"https?://", html), html
        assert len(server.client.get(asset).content) > 500_000
    assert server.client.get("/docs/oauth2-redirect").status_code == 200


def test_openapi_documents_the_review_endpoints(server):
    doc = server.client.get("/openapi.json").json()
    assert {"/v1/review", "/v1/review/progress/{token}", "/v1/review/{result_id}/download",
            "/v1/models/{version}/curves"} <= set(doc["paths"])
    post = doc["paths"]["/v1/review"]["post"]
    assert {"multipart/form-data", "audio/*"} <= set(post["requestBody"]["content"])
    assert {"400", "413", "415", "422", "503"} <= set(post["responses"])
    for name in ("ReviewResponse", "SpectrogramImage", "ReviewProgress", "TrainingCurves"):
        for field, spec in doc["components"]["schemas"][name]["properties"].items():
            assert spec.get("description"), f"{name}.{field}"
            assert "$ref" in json.dumps(spec) or spec.get("examples") is not None, f"{name}.{field}"
    for path in ("/v1/review", "/v1/review/{result_id}/download"):
        for p in next(iter(doc["paths"][path].values()))["parameters"]:
            assert p.get("description") and (p.get("examples") or p["schema"].get("examples")), (path, p["name"])


# -- in-process: the bounded stores ----------------------------------------------------------------------------
def _pred(n_windows: int) -> Prediction:
    return Prediction(starts_s=np.arange(n_windows) * 5.0, window_s=5.0,
                      probabilities=np.zeros((n_windows, 4), np.float32))


def test_result_cache_drops_the_oldest_past_its_memory_and_expires():
    card = tiny_card(tiny_frontend())
    cache = ResultCache(ttl_s=60, max_bytes=3 * (4096 + 100 * 4 * 4 + 100 * 8))
    ids = [cache.put(_pred(100), card, f"f{i}", f"f{i}.wav") for i in range(5)]
    assert [cache.get(i) is not None for i in ids] == [False, False, True, True, True]
    expired = ResultCache(ttl_s=0, max_bytes=10**9)
    rid = expired.put(_pred(1), card, "x", "x.wav")
    assert expired.get(rid) is None


def test_progress_board_is_bounded():
    board = ProgressBoard(ttl_s=60)
    for i in range(1100):
        board.start(f"token-{i:05d}")
    assert board.get("token-00000") is None and board.get("token-01099").stage == "receiving"
