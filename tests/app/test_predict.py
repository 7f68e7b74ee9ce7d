"""POST /v1/predict and /v1/predict/batch against a real server: formats, windows, filters, CSV, errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from tests.utils.models import DEFAULT_CODES

from .audio_files import encode, wav

FORMATS = [
    # (format, subtype, rate, channels, extension)
    ("WAV", "PCM_16", 16000, 1, "wav"),
    ("WAV", "PCM_24", 44100, 2, "wav"),
    ("WAV", "PCM_32", 22050, 1, "wav"),
    ("WAV", "FLOAT", 48000, 2, "wav"),
    ("WAV", "PCM_U8", 8000, 1, "wav"),
    ("WAV", "ULAW", 8000, 1, "wav"),
    ("WAVEX", "PCM_16", 32000, 6, "wav"),
    ("FLAC", "PCM_16", 32000, 1, "flac"),
    ("FLAC", "PCM_24", 48000, 2, "flac"),
    ("OGG", "VORBIS", 32000, 1, "ogg"),
    ("OGG", "VORBIS", 48000, 2, "ogg"),
    ("OGG", "OPUS", 48000, 1, "opus"),
    ("MP3", "MPEG_LAYER_III", 44100, 2, "mp3"),
]


def _probs_ok(body: dict, n_windows: int) -> None:
    assert body["model"] == {"name": "birds", "version": 1}
    assert body["audio"]["windows"] == n_windows == len(body["windows"])
    for w in body["windows"]:
        assert set(w["probabilities"]) == set(DEFAULT_CODES)
        assert all(0.0 <= p <= 1.0 for p in w["probabilities"].values())
    assert set(body["summary"]) == set(DEFAULT_CODES)
    # the test card declares no smoothing: the model's own probabilities, and the answer says so
    assert body["postprocess"] == {"smoothing": "none", "applied": False, "neighbour_offset": None,
                                   "neighbour_weights": None, "damping": None, "note": ""}
    t = body["timings"]
    assert t["total_ms"] >= t["decode_ms"] >= 0 and t["frontend_ms"] >= 0 and t["model_ms"] >= 0


@pytest.mark.parametrize(("fmt", "subtype", "rate", "channels", "ext"), FORMATS,
                         ids=[f"{f[0]}-{f[1]}-{f[2]}-{f[3]}ch" for f in FORMATS])
def test_every_format_multipart(server, fmt, subtype, rate, channels, ext):
    data = encode(12.0, rate, fmt, subtype, channels)
    r = server.client.post("/v1/predict", files={"file": (f"rec_{ext}.{ext}", data, f"audio/{ext}")})
    assert r.status_code == 200, r.text
    body = r.json()
    _probs_ok(body, 2)  # 12 s: windows ending at 5 and 10; the 2 s tail is under min_partial_s
    assert body["audio"]["sample_rate"] == rate
    assert body["audio"]["channels"] == channels
    assert abs(body["audio"]["duration_s"] - 12.0) < 0.1
    assert [w["row_id"] for w in body["windows"]] == [f"rec_{ext}_5", f"rec_{ext}_10"]


def test_raw_body_equals_multipart(server):
    data = wav(15.0, 22050)
    a = server.client.post("/v1/predict", files={"file": ("x.wav", data, "audio/wav")}).json()
    b = server.client.post("/v1/predict", content=data, headers={"Content-Type": "audio/wav"}).json()
    assert [w["probabilities"] for w in a["windows"]] == [w["probabilities"] for w in b["windows"]]
    assert [w["row_id"] for w in b["windows"]] == ["upload_5", "upload_10", "upload_15"]
    c = server.client.post("/v1/predict", content=data, headers={
        "Content-Type": "application/octet-stream", "Content-Disposition": 'attachment; filename="site 7.wav"'})
    assert c.status_code == 200 and c.json()["windows"][0]["row_id"] == "site_7_5"


def test_spooled_large_upload(server):
    data = wav(60.0, 22050)  # 2.6 MB: above the 64 KiB spool threshold, below the 8 MB limit
    r = server.client.post("/v1/predict", files={"file": ("big.wav", data, "audio/wav")})
    assert r.status_code == 200, r.text
    assert r.json()["audio"]["windows"] == 12


def test_overlapping_windows(server):
    data = wav(20.0)
    body = server.client.post("/v1/predict", params={"hop_s": 2.5}, content=data,
                              headers={"Content-Type": "audio/wav"}).json()
    starts = [w["start_s"] for w in body["windows"]]
    assert starts == [0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0, 17.5]
    assert [w["end_s"] for w in body["windows"]] == [s + 5.0 for s in starts]
    assert body["windows"][1]["row_id"] == "upload_7"  # int(7.5)
    plain = server.client.post("/v1/predict", content=data, headers={"Content-Type": "audio/wav"}).json()
    # windows starting at 0, 5, 10, 15 are the same audio either way
    for i, j in ((0, 0), (2, 1), (4, 2), (6, 3)):
        assert body["windows"][i]["probabilities"] == plain["windows"][j]["probabilities"]


def test_threshold_top_k_species(server):
    data = wav(30.0)
    post = server.client.post
    full = post("/v1/predict", content=data, headers={"Content-Type": "audio/wav"}).json()
    thr = post("/v1/predict", params={"threshold": 0.5}, content=data, headers={"Content-Type": "audio/wav"}).json()
    for fw, tw in zip(full["windows"], thr["windows"], strict=True):
        assert tw["probabilities"] == {k: v for k, v in fw["probabilities"].items() if v >= 0.5}
    assert thr["summary"] == {k: v for k, v in full["summary"].items() if v >= 0.5}
    top = post("/v1/predict", params={"top_k": 2}, content=data, headers={"Content-Type": "audio/wav"}).json()
    for fw, tw in zip(full["windows"], top["windows"], strict=True):
        best = sorted(fw["probabilities"].items(), key=lambda kv: -kv[1])[:2]
        assert tw["probabilities"] == dict(best)
    sp = post("/v1/predict?species=comrav&species=amered,houspa", content=data,
              headers={"Content-Type": "audio/wav"}).json()
    assert all(set(w["probabilities"]) == {"comrav", "amered", "houspa"} for w in sp["windows"])
    assert set(sp["summary"]) == {"comrav", "amered", "houspa"}
    bad = post("/v1/predict", params={"species": "dodo"}, content=data, headers={"Content-Type": "audio/wav"})
    assert bad.status_code == 422 and bad.json()["error"] == "unknown_species"


def test_csv_output(server):
    data = wav(20.0)
    full = server.client.post("/v1/predict", content=data, headers={"Content-Type": "audio/wav"}).json()
    r = server.client.post("/v1/predict", params={"format": "csv"}, files={"file": ("site1.flac", data, "audio/wav")})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["x-model-version"] == "1"
    assert r.headers["x-postprocess"] == "smoothing=none; applied=false"
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["row_id", *DEFAULT_CODES]
    assert [row[0] for row in rows[1:]] == ["site1_5", "site1_10", "site1_15", "site1_20"]
    for row, w in zip(rows[1:], full["windows"], strict=True):
        assert [float(v) for v in row[1:]] == pytest.approx([w["probabilities"][c] for c in DEFAULT_CODES], abs=2e-6)
    sub = server.client.post("/v1/predict", params={"format": "csv", "species": "houspa"}, content=data,
                             headers={"Content-Type": "audio/wav"})
    assert sub.text.splitlines()[0] == "row_id,houspa"


def test_client_filename_is_never_a_path(server):
    r = server.client.post("/v1/predict", files={"file": ("../../etc/passwd.wav", wav(6.0), "audio/wav")})
    assert r.status_code == 200
    assert r.json()["windows"][0]["row_id"] == "passwd_5"


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"content": b"RIFF\x00\x00garbage" * 100, "headers": {"Content-Type": "audio/wav"}}, 400, None),
    ({"content": wav(10.0)[:30000], "headers": {"Content-Type": "audio/wav"}}, 400, "truncated_audio"),
    ({"content": b"", "headers": {"Content-Type": "audio/wav"}}, 400, "empty_audio"),
    ({"files": {"file": ("x.wav", b"\x00" * 5000, "audio/wav")}}, 400, None),
    ({"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
    ({"json": {"audio": "x"}}, 415, "unsupported_media_type"),
    ({"files": {"file": ("notes.txt", b"hello", "text/plain")}}, 415, "unsupported_media_type"),
    ({"files": {"other": ("x.wav", b"RIFF", "audio/wav")}}, 422, "missing_file"),
    ({"content": b"x" * 8_000_001, "headers": {"Content-Type": "audio/wav"}}, 413, "upload_too_large"),
    ({"files": {"file": ("x.wav", b"x" * 8_100_000, "audio/wav")}}, 413, "upload_too_large"),
    ({"content": wav(130.0, 8000, subtype="PCM_U8"), "headers": {"Content-Type": "audio/wav"}}, 413,
     "audio_too_long"),
], ids=["corrupt", "truncated", "empty", "zeros", "text-raw", "json", "text-part", "no-file-field",
        "too-many-bytes", "too-many-bytes-multipart", "too-long"])
def test_errors(server, kwargs, status, code):
    r = server.client.post("/v1/predict", **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and body["detail"]
    if code:
        assert body["error"] == code


def test_too_many_bytes_without_content_length(server):
    def chunks():
        for _ in range(90):
            yield b"\x00" * 100_000  # 9 MB, chunked: no Content-Length to check up front

    r = server.client.post("/v1/predict", content=chunks(), headers={"Content-Type": "audio/wav"})
    assert r.status_code == 413 and r.json()["error"] == "upload_too_large"


@pytest.mark.parametrize("params", [{"hop_s": 0}, {"hop_s": 0.5}, {"hop_s": "abc"}, {"threshold": 1.5},
                                    {"top_k": 0}, {"format": "xml"}])
def test_bad_options_422(server, params):
    r = server.client.post("/v1/predict", params=params, content=wav(6.0), headers={"Content-Type": "audio/wav"})
    assert r.status_code == 422, r.text
    assert r.json()["error"] in ("invalid_request", "invalid_option")


def test_unknown_route_and_method_are_json(server):
    r = server.client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = server.client.get("/v1/predict")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_batch_with_one_bad_file(server):
    files = [("files", ("a.wav", wav(10.0), "audio/wav")), ("files", ("bad.wav", b"junk" * 100, "audio/wav")),
             ("files", ("c.flac", encode(8.0, 32000, "FLAC", "PCM_16"), "audio/flac"))]
    r = server.client.post("/v1/predict/batch", params={"top_k": 1}, files=files)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [200, 400, 200]
    assert [x["filename"] for x in results] == ["a.wav", "bad.wav", "c.flac"]
    assert results[1]["error"]["error"] in ("not_audio", "corrupt_audio") and results[1]["result"] is None
    assert [w["row_id"] for w in results[2]["result"]["windows"]] == ["c_5", "c_10"]  # 3 s tail kept
    assert all(len(w["probabilities"]) == 1 for w in results[0]["result"]["windows"])


def test_batch_too_many_files(server):
    files = [("files", (f"{i}.wav", wav(5.0), "audio/wav")) for i in range(5)]
    r = server.client.post("/v1/predict/batch", files=files)
    assert r.status_code == 413 and r.json()["error"] == "too_many_files"


def test_concurrent_requests_get_their_own_results(server):
    import concurrent.futures

    files = [wav(10.0 + i, 16000) for i in range(8)]
    alone = [server.client.post("/v1/predict", content=f, headers={"Content-Type": "audio/wav"}).json() for f in files]

    def post(f):
        return server.client.post("/v1/predict", content=f, headers={"Content-Type": "audio/wav"}).json()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(post, files))
    for a, b in zip(alone, together, strict=True):
        assert [w["probabilities"] for w in a["windows"]] == [w["probabilities"] for w in b["windows"]]


def test_import_app_loads_no_torch():
    code = "import sys, app.main, app.cli; app.main.create_app(); sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


@pytest.mark.parametrize(("params", "named"), [({"min_conf": 0.3}, "'min_conf' (did you mean 'threshold'?)"),
                                               ({"hop_s": 2.5, "sepcies": "amered"}, "'sepcies'")])
@pytest.mark.parametrize("path", ["/v1/predict", "/v1/predict/batch"])
def test_unknown_query_options_are_refused_not_ignored(server, params, named, path):
    r = server.client.post(path, params=params, files={"file": ("a.wav", wav(6.0), "audio/wav")})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "invalid_option" and named in body["detail"] and "threshold" in body["detail"]


@pytest.mark.parametrize("hop", [0.5, 0.99])
def test_hops_under_one_second_are_refused(server, hop):
    raw = {"Content-Type": "audio/wav"}
    r = server.client.post("/v1/predict", params={"hop_s": hop}, content=wav(6.0), headers=raw)
    assert r.status_code == 422 and r.json()["error"] in ("invalid_request", "invalid_option")
    ok = server.client.post("/v1/predict", params={"hop_s": 1.0, "format": "csv"}, content=wav(8.0), headers=raw)
    # full windows end at 5..8 s; the one starting at 4 s holds 4 s (>= 2.5 s) and ends at 9 s: one id each
    assert [row.split(",")[0] for row in ok.text.splitlines()[1:]] == [f"upload_{e}" for e in range(5, 10)]


def test_batch_answers_csv_when_asked(server):
    files = [("files", ("a.wav", wav(10.0), "audio/wav")), ("files", ("bad.wav", b"junk" * 100, "audio/wav")),
             ("files", ("c.flac", encode(8.0, 32000, "FLAC", "PCM_16"), "audio/flac"))]
    r = server.client.post("/v1/predict/batch", params={"format": "csv", "species": "houspa,amered"}, files=files)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["row_id", "houspa", "amered"]
    assert [row[0] for row in rows[1:]] == ["a_5", "a_10", "c_5", "c_10"]
    failed = json.loads(r.headers["x-failed-files"])
    assert [(f["filename"], f["status"]) for f in failed] == [("bad.wav", 400)]
    assert failed[0]["error"] in ("not_audio", "corrupt_audio")
    assert r.headers["x-model-version"] == "1" and r.headers["x-postprocess"] == "smoothing=none; applied=false"
    # the same rows as each file alone
    alone = server.client.post("/v1/predict", params={"format": "csv", "species": "houspa,amered"},
                               files={"file": ("c.flac", files[2][1][1], "audio/flac")})
    assert alone.text.splitlines()[1:] == r.text.splitlines()[3:]
