"""Faults in the store: corrupt or missing models at start-up and at reload, registrations killed while
the service reads the store.

tests/test_store.py kills registrations without a service; tests/app covers a checksum mismatch and a
junk ONNX at reload, and SIGTERM draining. Here: every kind of bad version at start-up (the process exits
with a clear message) and at reload (the old model keeps serving), and SIGKILLed registrations while a
service serves and reloads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from model_store import MODEL_FILE, POINTER_FILE, ModelStore
from tests.test_store import _script, big_onnx  # noqa: F401 - big_onnx is a fixture
from tests.utils.models import make_store, tiny_card, tiny_frontend, write_tiny_onnx
from tests.utils.server import Server

from .conftest import ADMIN_TOKEN, AUTH
from .payloads import encode, tone

WAV = encode(tone(6.0, 16000), 16000)
RAW = {"Content-Type": "audio/wav"}


def corrupt(store_root: Path, kind: str) -> tuple[int, str]:
    """Register (or point at) a bad version and make it production; returns (version, expected log words)."""
    store = ModelStore(store_root)
    fe = tiny_frontend()
    work = store_root.parent
    if kind == "bad_checksum":
        v = store.register(tiny_card(fe), write_tiny_onnx(work / "c.onnx", fe, 4, seed=3), promote=True).version
        onnx = store.version_dir("birds", v) / MODEL_FILE
        data = bytearray(onnx.read_bytes())
        data[len(data) // 2] ^= 0xFF
        onnx.write_bytes(bytes(data))
        return v, "sha256"
    if kind == "truncated_onnx":  # registered truncated: the checksum matches, the graph does not load
        good = write_tiny_onnx(work / "t.onnx", fe, 4, seed=3).read_bytes()
        (work / "trunc.onnx").write_bytes(good[: len(good) // 2])
        return store.register(tiny_card(fe), work / "trunc.onnx", promote=True).version, "load"
    if kind == "card_shape_mismatch":  # the card says 64 mels, the graph takes 32
        onnx = write_tiny_onnx(work / "s.onnx", fe, 4, seed=3)
        return store.register(tiny_card(tiny_frontend(n_mels=64)), onnx, promote=True).version, "shape"
    if kind == "missing_version":
        (store_root / "birds" / POINTER_FILE).write_text(json.dumps({"version": 9, "history": [1, 9]}))
        return 9, "v9"
    raise ValueError(kind)


KINDS = ["bad_checksum", "truncated_onnx", "card_shape_mismatch", "missing_version"]


@pytest.mark.parametrize("kind", KINDS)
def test_start_fails_clearly_when_nothing_good_is_there(tmp_path, kind):
    root = tmp_path / "store"
    make_store(root, versions=0)
    ModelStore(root)  # an empty store folder
    fe = tiny_frontend()
    if kind == "missing_version":
        ModelStore(root).register(tiny_card(fe), write_tiny_onnx(tmp_path / "ok.onnx", fe, 4), promote=True)
    _, words = corrupt(root, kind)
    with pytest.raises(RuntimeError, match="exited") as err:
        Server(tmp_path, root)
    log = str(err.value)
    assert "nothing good to serve" in log and words in log.lower(), log[-1500:]
    assert "Traceback" not in log.split("nothing good to serve")[0]


@pytest.mark.parametrize("kind", KINDS)
def test_reload_refuses_bad_version_and_the_old_model_keeps_serving(make_server, kind):
    srv = make_server(admin_token=ADMIN_TOKEN)
    before = srv.client.post("/v1/predict", content=WAV, headers=RAW).json()
    assert before["model"]["version"] == 1
    corrupt(srv.store, kind)
    r = srv.client.post("/v1/admin/reload", headers=AUTH)
    assert r.status_code in (404, 409) and r.json()["error"], r.text
    after = srv.client.post("/v1/predict", content=WAV, headers=RAW)
    assert after.status_code == 200 and after.json()["windows"] == before["windows"]
    assert after.json()["model"]["version"] == 1 and srv.client.get("/readyz").status_code == 200
    assert "refused" in srv.log()


def test_killed_registrations_while_serving_leave_the_store_valid(make_server, tmp_path, big_onnx):  # noqa: F811
    """SIGKILL registrations at different points while clients predict and an admin reloads in a loop."""
    srv = make_server(admin_token=ADMIN_TOKEN)
    script = _script(tmp_path)
    stop = threading.Event()
    failures: list[str] = []
    answers: list[int] = []

    def clients() -> None:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/v1/predict", content=WAV, headers=RAW)
                if r.status_code != 200:
                    failures.append(f"predict {r.status_code} {r.text[:200]}")
                r = c.post("/v1/admin/reload", headers=AUTH)
                answers.append(r.status_code)
                if r.status_code != 200:
                    failures.append(f"reload {r.status_code} {r.text[:200]}")

    worker = threading.Thread(target=clients)
    worker.start()
    try:
        for kill_after in (0.02, 0.15, 0.4):
            proc = subprocess.Popen([sys.executable, str(script), str(srv.store), str(big_onnx), "0.01"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 30
            while not list((srv.store / "birds").glob(".incoming-*/model.onnx")) and proc.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            time.sleep(kill_after)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        # one registration that completes: the reload loop then serves it
        done = subprocess.run([sys.executable, str(script), str(srv.store), str(big_onnx), "0"],
                              capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        time.sleep(1.0)
    finally:
        stop.set()
        worker.join(60)
    assert not failures and len(answers) >= 3, failures[:5]
    store = ModelStore(srv.store)
    production = store.production("birds")
    assert production in store.versions("birds")
    for v in store.versions("birds"):
        store.load("birds", v)  # every visible version verifies
    assert srv.client.get("/readyz").json()["model"]["version"] == production
