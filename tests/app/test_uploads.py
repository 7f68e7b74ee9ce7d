"""Multipart uploads through python-multipart's public streaming parser (``app/uploads.py``): limits while
streaming, malformed bodies, and the dependency's lower bound."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from .audio_files import wav

ROOT = Path(__file__).resolve().parents[2]
BOUNDARY = "b0undary"


def multipart(*parts: tuple[str, str | None, bytes], close: bool = True) -> bytes:
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return body + (f"--{BOUNDARY}--\r\n".encode() if close else b"")


def post(server, body: bytes):
    return server.client.post("/v1/predict", content=body,
                              headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})


def test_a_file_with_form_fields_around_it_is_read(server):
    r = post(server, multipart(("note", None, b"site 7"), ("file", "a.wav", wav(6.0)), ("other", None, b"x")))
    assert r.status_code == 200 and r.json()["windows"][0]["row_id"] == "a_5"
    r = post(server, multipart(("file", None, wav(6.0))))  # `curl -F file=<a.wav`: no filename
    assert r.status_code == 200 and r.json()["windows"][0]["row_id"] == "upload_5"


def test_a_file_over_the_limit_is_stopped_while_streaming(server):
    big = wav(6.0) + b"\0" * 8_100_000  # the session server's limit is 8 MB per file
    r = post(server, multipart(("file", "big.wav", big)))
    assert r.status_code == 413 and r.json()["error"] == "upload_too_large"


@pytest.mark.parametrize(("body", "status", "code"), [
    (multipart(("file", "a.wav", wav(6.0)), close=False), 400, "bad_multipart"),  # no closing boundary
    (multipart(*[(f"f{i}", None, b"x") for i in range(17)], ("file", "a.wav", wav(6.0))), 400, "bad_multipart"),
    (multipart(("note", None, b"x" * 70_000), ("file", "a.wav", wav(6.0))), 400, "bad_multipart"),
    (b"--" + BOUNDARY.encode() + b"\r\nContent-Disposition: form-data\r\n\r\nx\r\n--" + BOUNDARY.encode() + b"--\r\n",
     400, "bad_multipart"),  # a part without a name
    (multipart(("other", "a.wav", wav(6.0))), 422, "missing_file"),  # a file, but not in `file`
    (multipart(*[("files", f"{i}.wav", wav(6.0)) for i in range(2)]), 413, "too_many_files"),
])
def test_malformed_or_over_limit_bodies(server, body, status, code):
    r = post(server, body)
    assert (r.status_code, r.json()["error"]) == (status, code), r.text


def test_no_boundary_is_a_bad_multipart(server):
    r = server.client.post("/v1/predict", content=b"x", headers={"Content-Type": "multipart/form-data"})
    assert (r.status_code, r.json()["error"]) == (400, "bad_multipart")


def test_python_multipart_bound_matches_the_module_the_code_imports():
    source = (ROOT / "app" / "uploads.py").read_text()
    assert "from python_multipart" in source and "starlette.formparsers" not in source
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bound = next(re.fullmatch(r"python-multipart>=([\d.]+)", d.split("#")[0].strip()) for d in deps
                 if d.startswith("python-multipart"))
    assert bound, deps
    # python_multipart (the import name) exists from 0.0.13; 0.0.18 fixed CVE-2024-53981 (a parser DoS)
    assert tuple(map(int, bound[1].split("."))) >= (0, 0, 18)
