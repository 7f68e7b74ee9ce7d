"""Slow, silent and vanishing clients against a real ``soundscape serve`` (issue 15).

- 2 x ``max_concurrent_requests`` silent connections (half send nothing, half a header and no body) do not lock
  out a normal client, and are closed after their timeouts;
- a per-client limit on uploads in progress (429 ``too_many_uploads``);
- a client that disconnects mid-upload: no 500 and no traceback, counted as 499, its spooled file gone;
- shutdown past the grace period answers JSON 503 with ``Retry-After``;
- the small items: long file names, ``GET /v1/admin/reload`` without a token, ``..`` in row ids.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.utils.server import Server

from .conftest import ADMIN_TOKEN
from .payloads import encode, tone

WAV = encode(tone(6.0, 16000), 16000)


def _connect(srv: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=10)


def _header(srv: Server, length: int, path: str = "/v1/predict") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nContent-Type: audio/wav\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def _read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed it."""
    t0 = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - t0


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def _json_body(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def _statuses(srv: Server) -> dict[str, float]:
    """``soundscape_http_requests_total`` summed by status."""
    out: dict[str, float] = {}
    for line in srv.client.get("/metrics").text.splitlines():
        if line.startswith("soundscape_http_requests_total{"):
            status = line.split('status="', 1)[1].split('"', 1)[0]
            out[status] = out.get(status, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def test_silent_connections_do_not_lock_out_a_normal_client(make_server):
    srv = make_server(max_concurrent_requests=4, header_timeout_s=2, body_idle_timeout_s=3,
                      max_uploads_per_client=32)
    silent = [_connect(srv) for _ in range(4)]  # connect, send nothing
    headers_only = [_connect(srv) for _ in range(4)]  # a header announcing a body that never comes
    for s in headers_only:
        s.sendall(_header(srv, 200_000))
    time.sleep(0.5)
    t0 = time.monotonic()
    r = srv.client.post("/v1/predict", content=WAV, headers={"Content-Type": "audio/wav"})
    assert r.status_code == 200, r.text
    assert time.monotonic() - t0 < 2.0
    for s in silent:  # closed by the header timeout (2 s from connecting), nothing sent
        data, took = _read_until_closed(s, 10)
        assert data == b"" and took < 4.0
    for s in headers_only:  # 408 upload_timeout after 3 s without body bytes, then closed
        data, took = _read_until_closed(s, 10)
        assert _status(data) == 408 and _json_body(data)["error"] == "upload_timeout", data[:300]
        assert took < 5.0
    assert "500" not in _statuses(srv)
    assert "Traceback" not in srv.log()


def test_per_client_limit_on_uploads_in_progress(make_server):
    srv = make_server(max_uploads_per_client=2, body_idle_timeout_s=20)
    slow = [_connect(srv) for _ in range(2)]
    for s in slow:
        s.sendall(_header(srv, 200_000) + WAV[:1000])
    time.sleep(0.5)
    r = srv.client.post("/v1/predict", content=WAV, headers={"Content-Type": "audio/wav"})
    assert r.status_code == 429 and r.json()["error"] == "too_many_uploads" and r.headers["retry-after"]
    for s in slow:
        s.close()
    time.sleep(0.5)
    r = srv.client.post("/v1/predict", content=WAV, headers={"Content-Type": "audio/wav"})
    assert r.status_code == 200, r.text
    assert 'soundscape_rejected_requests_total{reason="too_many_uploads"} 1.0' in srv.client.get("/metrics").text


def _spooled_files(srv: Server, tmpdir: Path) -> list[str]:
    """The server's open descriptors on files in ``tmpdir`` (anonymous temp files too: psutil skips deleted ones)."""
    fds = Path(f"/proc/{srv.proc.pid}/fd")
    targets = []
    for fd in fds.iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:
            continue
    return [t for t in targets if t.startswith(str(tmpdir))]


@pytest.mark.parametrize("body", ["raw", "multipart"])
def test_disconnect_mid_upload_is_quiet_and_frees_the_spool(make_server, tmp_path, monkeypatch, body):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool_dir))
    srv = make_server(spool_threshold_bytes=65_536)
    payload = WAV[:300_000]
    if body == "multipart":
        head = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.wav"\r\n'
                b"Content-Type: audio/wav\r\n\r\n")
        request = (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                   b"Content-Length: 2000000\r\n\r\n") + head + payload
    else:
        request = _header(srv, 2_000_000) + payload
    for _ in range(3):
        s = _connect(srv)
        s.sendall(request)
        deadline = time.monotonic() + 10
        while not _spooled_files(srv, spool_dir):  # the upload went past the spool threshold, to a file
            assert time.monotonic() < deadline
            time.sleep(0.05)
        s.close()
    deadline = time.monotonic() + 10
    while _statuses(srv).get("499", 0) < 3:
        assert time.monotonic() < deadline, _statuses(srv)
        time.sleep(0.05)
    assert _spooled_files(srv, spool_dir) == []
    statuses = _statuses(srv)
    assert statuses["499"] == 3 and "500" not in statuses, statuses
    assert "soundscape_client_disconnects_total 3.0" in srv.client.get("/metrics").text
    log = srv.log()
    assert "Traceback" not in log and "unhandled error" not in log and "client went away" in log
    assert srv.client.post("/v1/predict", content=WAV, headers={"Content-Type": "audio/wav"}).status_code == 200


def test_shutdown_past_grace_answers_json_503(make_server):
    srv = make_server(graceful_shutdown_s=1, body_idle_timeout_s=60)
    s = _connect(srv)
    s.sendall(_header(srv, 200_000) + WAV[:1000])
    time.sleep(0.5)
    srv.proc.send_signal(signal.SIGTERM)
    data, took = _read_until_closed(s, 15)
    assert _status(data) == 503, data[:500]
    assert _json_body(data)["error"] == "shutting_down"
    assert b"\r\nretry-after: " in data.lower()
    assert took < 10
    srv.proc.wait(15)
    log = srv.log()
    assert "Traceback" not in log and "answered 503" in log


def test_long_file_names_and_row_ids(fuzz_server):
    server = fuzz_server
    files = {"file": ("a" * 5000 + ".wav", WAV, "audio/wav")}
    r = server.client.post("/v1/predict", files=files)
    assert r.status_code == 200 and r.json()["windows"][0]["row_id"] == "a" * 100 + "_5", r.text[:300]
    r = server.client.post("/v1/predict", files={"file": ("b" * 20_000 + ".wav", WAV, "audio/wav")})
    assert r.status_code == 400 and r.json()["error"] == "bad_multipart" and "file name" in r.json()["detail"]
    r = server.client.post("/v1/predict", files={"file": ("..a..b...wav", WAV, "audio/wav")})
    assert r.status_code == 200
    assert all(".." not in w["row_id"] for w in r.json()["windows"]), r.json()["windows"][0]


def test_admin_other_methods(make_server, fuzz_server):
    server = fuzz_server
    plain = make_server()
    for method in ("GET", "PUT", "DELETE"):
        assert plain.client.request(method, "/v1/admin/reload").status_code == 404
        assert plain.client.request(method, "/v1/admin/promote/2").status_code == 404
    r = server.client.get("/v1/admin/reload")  # admin enabled: the route exists, for POST
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed" and r.headers["allow"] == "POST"
    assert server.client.get("/v1/admin/nothing").status_code == 404
    assert server.client.post("/v1/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
