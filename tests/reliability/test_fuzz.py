"""Bad input never takes the service down: property-based fuzzing of the decode path and of POST /v1/predict.

Every answer is a 200 or a documented 4xx with a JSON reason, within a time bound; the server process
stays alive and its peak memory (VmHWM) stays bounded, also for files that expand enormously when decoded.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soundscape.audio import Audio, AudioError, decode, probe

from .conftest import MAX_DURATION_S, MAX_UPLOAD_BYTES, rss_mb
from .payloads import DOCUMENTED_4XX, encode, extremes, mangled_audio, tone

DECODE_BOUND_S = 5.0
HTTP_BOUND_S = 15.0
PEAK_RSS_BOUND_MB = 600.0  # the tiny-model server idles near 130 MB

CONTENT_TYPES = ["audio/wav", "audio/flac", "audio/ogg", "audio/mpeg", "audio/x-unknown", "application/octet-stream",
                 "text/plain", "image/png", "application/json", ""]
FILENAMES = ["rec.wav", "rec.flac", "rec.mp3", "../../etc/passwd", "..\\..\\boot.ini", "/etc/shadow", "a/b/c.ogg",
             "x" * 300 + ".wav", "nul\x00byte.wav", "ünïcødé.wav", "", "....", "rec.exe"]


def peak_rss_mb(pid: int) -> float:
    """The process's high-water resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def check_answer(r: httpx.Response, took: float) -> None:
    assert took < HTTP_BOUND_S, f"{took:.1f} s"
    assert r.headers["content-type"].startswith("application/json"), r.text[:200]
    body = r.json()
    if r.status_code == 200:
        assert body["model"]["version"] >= 1 and body["audio"]["windows"] == len(body["windows"]) >= 1
        for w in body["windows"]:
            assert all(0.0 <= p <= 1.0 for p in w["probabilities"].values())
        return
    assert r.status_code in DOCUMENTED_4XX, (r.status_code, body)
    assert body["error"] in DOCUMENTED_4XX[r.status_code], body
    assert isinstance(body["detail"], str) and body["detail"]


def post(client: httpx.Client, data: bytes, content_type: str, *, multipart: bool, filename: str = "rec.wav"):
    t0 = time.monotonic()
    if multipart:
        r = client.post("/v1/predict", files={"file": (filename, data, content_type or "application/octet-stream")})
    else:
        headers = {"Content-Type": content_type} if content_type else {}
        r = client.post("/v1/predict", content=data, headers=headers)
    return r, time.monotonic() - t0


# -- the decode path, in process ----------------------------------------------------------------------
@settings(settings.get_profile("reliability"), max_examples=150)
@given(data=mangled_audio())
def test_decode_returns_audio_or_audio_error(data):
    t0 = time.monotonic()
    try:
        audio = decode(data, sample_rate=16000, max_duration_s=MAX_DURATION_S)
    except AudioError as exc:
        assert exc.code and exc.message
    else:
        assert isinstance(audio, Audio) and audio.samples.dtype == np.float32 and audio.samples.ndim == 1
        assert len(audio.samples) > 0 and np.isfinite(audio.samples).all()
    with contextlib.suppress(AudioError):
        probe(data)
    assert time.monotonic() - t0 < DECODE_BOUND_S


@pytest.mark.parametrize("name", sorted(extremes()))
def test_decode_extremes(name):
    data = extremes()[name]
    t0 = time.monotonic()
    try:
        audio = decode(data, sample_rate=16000, max_duration_s=MAX_DURATION_S)
    except AudioError as exc:
        assert exc.code
    else:
        assert np.isfinite(audio.samples).all() and audio.duration_s <= MAX_DURATION_S
        assert name in {"one_sample", "eight_channels", "rate_384k"}, f"{name} decoded"
    assert time.monotonic() - t0 < DECODE_BOUND_S


def test_decode_memory_is_bounded_for_a_highly_compressible_file():
    """60 s of 384 kHz 8-channel FLAC silence is ~200 KB but 737 MB as float32 frames x channels."""
    import resource

    data = encode(np.zeros((384000 * 60, 8), np.float32), 384000, "FLAC", "PCM_16")
    assert len(data) < 1_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    audio = decode(data, sample_rate=16000)
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    assert len(audio.samples) == 16000 * 60
    assert grew < 300, f"peak RSS grew {grew:.0f} MB decoding {len(data)} bytes"


# -- POST /v1/predict on a real server ---------------------------------------------------------------
@settings(settings.get_profile("reliability"), max_examples=60)
@given(data=mangled_audio(), content_type=st.sampled_from(CONTENT_TYPES), multipart=st.booleans(),
       filename=st.sampled_from(FILENAMES))
def test_predict_fuzz_answers_200_or_documented_4xx(fuzz_server, data, content_type, multipart, filename):
    r, took = post(fuzz_server.client, data, content_type, multipart=multipart, filename=filename)
    check_answer(r, took)


@pytest.mark.parametrize("multipart", [False, True], ids=["raw", "multipart"])
def test_predict_extremes(fuzz_server, multipart):
    expected = {"zero_length": 400, "one_sample": 200, "nan_float_wav": 400, "inf_float_wav": 400,
                "huge_float_wav": 400,
                "eight_channels": 200, "rate_384k": 200, "rate_over_384k": 400, "two_hours_declared": 413,
                "four_gb_declared": 413, "zero_channels": 400, "text": 400}
    for name, data in extremes().items():
        r, took = post(fuzz_server.client, data, "audio/wav", multipart=multipart)
        check_answer(r, took)
        if name in expected:
            assert r.status_code == expected[name], (name, r.json())
    body = post(fuzz_server.client, extremes()["eight_channels"], "audio/wav", multipart=multipart)[0].json()
    assert body["audio"]["channels"] == 8
    body = post(fuzz_server.client, extremes()["rate_384k"], "audio/wav", multipart=multipart)[0].json()
    assert body["audio"]["sample_rate"] == 384000
    assert post(fuzz_server.client, extremes()["nan_float_wav"], "audio/wav",
                multipart=multipart)[0].json()["error"] == "non_finite_samples"
    # finite but 1e30 x full scale: would overflow the spectrogram into NaN probabilities
    assert post(fuzz_server.client, extremes()["huge_float_wav"], "audio/wav",
                multipart=multipart)[0].json()["error"] == "corrupt_audio"


def test_wrong_content_types_and_extensions(fuzz_server):
    wav = encode(tone(6.0, 16000), 16000)
    r, took = post(fuzz_server.client, wav, "text/plain", multipart=False)
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
    r, took = post(fuzz_server.client, wav, "image/png", multipart=True, filename="rec.png")
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
    # the extension is not trusted either way: a WAV named .mp3 decodes, text named .wav is not audio
    r, _ = post(fuzz_server.client, wav, "audio/mpeg", multipart=True, filename="rec.mp3")
    assert r.status_code == 200 and r.json()["windows"][0]["row_id"] == "rec_5"
    r, _ = post(fuzz_server.client, b"hello" * 100, "audio/wav", multipart=True, filename="rec.wav")
    assert r.status_code == 400 and r.json()["error"] == "not_audio"


def test_long_recordings_are_refused_from_the_header(fuzz_server):
    """A real 2-hour FLAC (silence: ~0.5 MB) and a 10 h WAV header answer 413 in well under a second."""
    two_hours = encode(np.zeros((8000 * 7200, 1), np.float32), 8000, "FLAC", "PCM_16")
    assert len(two_hours) < MAX_UPLOAD_BYTES
    for multipart in (False, True):
        r, took = post(fuzz_server.client, two_hours, "audio/flac", multipart=multipart)
        assert r.status_code == 413 and r.json()["error"] == "audio_too_long" and took < 2.0, (r.json(), took)


def test_memory_bomb_and_spooled_upload_keep_rss_bounded(fuzz_server):
    """Highly compressible audio and uploads past the spool threshold: peak RSS stays bounded."""
    bomb = encode(np.zeros((384000 * 100, 8), np.float32), 384000, "FLAC", "PCM_16")  # 100 s: 1.2 GB decoded
    big = encode(tone(110.0, 16000), 16000)  # 3.5 MB: spooled to disk past 64 KB
    assert len(bomb) < 1_000_000 and 3_000_000 < len(big) < MAX_UPLOAD_BYTES
    for data in (bomb, big, bomb):
        r, took = post(fuzz_server.client, data, "audio/flac", multipart=True)
        assert r.status_code == 200, r.text
        check_answer(r, took)
    r, _ = post(fuzz_server.client, big + bytes(MAX_UPLOAD_BYTES), "audio/wav", multipart=False)
    assert r.status_code == 413 and r.json()["error"] == "upload_too_large"
    assert peak_rss_mb(fuzz_server.proc.pid) < PEAK_RSS_BOUND_MB


def test_server_survived_the_fuzzing(fuzz_server):
    """Runs last in this module: the same process answers, with bounded memory and no 500 in its log."""
    assert fuzz_server.proc.poll() is None
    assert fuzz_server.client.get("/readyz").status_code == 200
    assert rss_mb(fuzz_server) < PEAK_RSS_BOUND_MB and peak_rss_mb(fuzz_server.proc.pid) < PEAK_RSS_BOUND_MB
    assert "Traceback" not in fuzz_server.log() and "unhandled error" not in fuzz_server.log()
