"""Models, health, metrics, OpenAPI, admin reload/promote, limits and shutdown against real servers."""

from __future__ import annotations

import json
import re
import threading
import time

import httpx
import pytest

from model_store import ModelStore
from tests.utils.models import DEFAULT_CODES, register_tiny, tiny_card, tiny_frontend

from .audio_files import wav
from .conftest import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RAW = {"Content-Type": "audio/wav"}


def metric(text: str, name: str, /, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, or None."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


class StalledUpload:
    """A request whose body stalls after its first chunk until ``release()``: it is in flight meanwhile."""

    def __init__(self, url: str, data: bytes, path: str = "/v1/predict") -> None:
        self._go = threading.Event()
        self.response: httpx.Response | None = None

        def body():
            yield data[:1000]
            self._go.wait(30)
            yield data[1000:]

        def send():
            with httpx.Client(base_url=url, timeout=60) as c:
                self.response = c.post(path, content=body(), headers=RAW)

        self._thread = threading.Thread(target=send, daemon=True)
        self._thread.start()

    def release(self) -> httpx.Response:
        self._go.set()
        self._thread.join(60)
        assert self.response is not None
        return self.response


def wait_in_flight(client: httpx.Client, n: int = 1) -> None:
    """Until ``n`` uploads are being received (a stalled upload is not admitted to processing yet)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if metric(client.get("/metrics").text, "soundscape_uploads_in_progress") == n:
            return
        time.sleep(0.02)
    raise AssertionError(f"never saw {n} upload(s) in progress")


# -- models, health, metrics, OpenAPI ------------------------------------------------------------------
def test_health_and_ready(server):
    assert server.client.get("/healthz").json() == {"status": "ok"}
    assert server.client.get("/readyz").json() == {"status": "ready", "model": {"name": "birds", "version": 1}}


def test_models(server):
    body = server.client.get("/v1/models").json()
    assert body["served"] == {"name": "birds", "version": 1}
    assert body["production_version"] == 1 and body["versions"] == [1]
    assert [label["code"] for label in body["card"]["labels"]] == DEFAULT_CODES
    assert body["card"]["frontend"]["n_mels"] == 32 and body["card"]["metrics"] == {"macro_roc_auc": 0.5}
    one = server.client.get("/v1/models/1").json()
    assert one["served"] and one["production"] and one["card"]["version"] == 1
    r = server.client.get("/v1/models/7")
    assert r.status_code == 404 and r.json()["error"] == "model_not_found"
    assert server.client.get("/v1/models/abc").status_code == 422


def test_metrics_content(server):
    server.client.post("/v1/predict", content=wav(10.0), headers=RAW)
    text = server.client.get("/metrics").text
    assert metric(text, "soundscape_http_requests_total", route="/v1/predict", status="200") >= 1
    assert metric(text, "soundscape_audio_seconds_processed_total") >= 10.0
    assert metric(text, "soundscape_windows_processed_total") >= 2
    assert metric(text, "soundscape_batch_size_count") >= 1
    assert metric(text, "soundscape_http_request_duration_seconds_count", route="/v1/predict") >= 1
    assert metric(text, "soundscape_stage_duration_seconds_count", stage="decode") >= 1
    assert metric(text, "soundscape_queue_depth_windows") == 0
    assert metric(text, "soundscape_model_info", name="birds", version="1") == 1
    assert metric(text, "soundscape_model_version", name="birds") == 1
    assert metric(text, "soundscape_model_ready") == 1
    assert "soundscape_model_reload_failures_total" in text or "soundscape_model_reload_failures" in text


def test_max_concurrent_batches_sets_the_model_runs(make_server):
    srv = make_server(max_concurrent_batches=3)  # the default (half the cores for a mel model) is in the waveform test
    assert metric(srv.client.get("/metrics").text, "soundscape_model_run_slots") == 3
    r = srv.client.post("/v1/predict", content=wav(10.0), headers=RAW)
    assert r.status_code == 200 and len(r.json()["windows"]) == 2


def test_openapi_documents_every_field(server):
    doc = server.client.get("/openapi.json").json()
    assert set(doc["paths"]) >= {"/v1/predict", "/v1/predict/batch", "/v1/models", "/v1/models/{version}",
                                 "/healthz", "/readyz", "/metrics", "/v1/admin/reload",
                                 "/v1/admin/promote/{version}"}
    ours = ["PredictResponse", "WindowResult", "AudioSummary", "Timings", "ModelRef", "BatchResponse",
            "BatchItem", "ErrorResponse", "ModelsResponse", "ModelVersionResponse", "ReloadResponse",
            "PostprocessReport", "Postprocess"]
    schemas = doc["components"]["schemas"]
    for name in ours:
        for field, spec in schemas[name]["properties"].items():
            assert spec.get("description"), f"{name}.{field} has no description"
            if "$ref" not in json.dumps(spec):
                assert spec.get("examples") is not None, f"{name}.{field} has no examples"
    predict = doc["paths"]["/v1/predict"]["post"]
    assert {"multipart/form-data", "audio/*"} <= set(predict["requestBody"]["content"])
    assert {p["name"] for p in predict["parameters"]} == {"hop_s", "threshold", "top_k", "species", "format"}
    for p in predict["parameters"]:
        assert p.get("description") and (p.get("examples") or p["schema"].get("examples")), p["name"]
    assert {"400", "413", "415", "422", "503"} <= set(predict["responses"])


# -- admin -----------------------------------------------------------------------------------------------
def _register(store_root, seed: int, kind: str = "mel") -> int:
    return register_tiny(ModelStore(store_root), kind, seed=seed).version


def test_admin_needs_token(server):
    assert server.client.post("/v1/admin/reload").status_code == 401
    r = server.client.post("/v1/admin/reload", headers={"Authorization": "Bearer wrong-token-0123456789"})
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert server.client.post("/v1/admin/promote/1", headers={"Authorization": "Basic abc"}).status_code == 401
    r = server.client.post("/v1/admin/reload", headers=AUTH)
    assert r.status_code == 200 and r.json()["changed"] is False


@pytest.mark.parametrize("kind", ["mel", "waveform"])
def test_reload_promote_and_refusals(make_server, kind):
    """v1 (mel) -> v2 (mel, or a waveform model) -> back to v1, then refusals."""
    srv = make_server(admin_token=ADMIN_TOKEN)
    c, store = srv.client, ModelStore(srv.store)
    v1 = c.post("/v1/predict", content=wav(10.0), headers=RAW).json()
    assert v1["model"]["version"] == 1

    v2 = _register(srv.store, seed=7, kind=kind)
    store.promote("birds", v2)
    r = c.post("/v1/admin/reload", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["previous"]["version"] == 1 and r.json()["served"]["version"] == 2 and r.json()["changed"]
    out = c.post("/v1/predict", content=wav(10.0), headers=RAW).json()
    assert out["model"]["version"] == 2 and out["windows"][0]["probabilities"] != v1["windows"][0]["probabilities"]
    assert c.get("/v1/models").json()["card"]["frontend"]["input"] == kind

    r = c.post("/v1/admin/promote/1", headers=AUTH)
    assert r.status_code == 200 and r.json()["served"]["version"] == 1
    assert store.production("birds") == 1
    back = c.post("/v1/predict", content=wav(10.0), headers=RAW).json()
    assert back["windows"] == v1["windows"] and back["model"]["version"] == 1

    # v3: bytes changed after registration (checksum mismatch); production pointer edited by hand.
    v3 = _register(srv.store, seed=8)
    onnx = store.version_dir("birds", v3) / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\x00")
    pointer = srv.store / "birds" / "production.json"
    saved = pointer.read_text()
    pointer.write_text(json.dumps({"version": v3, "history": [1, v3]}))
    r = c.post("/v1/admin/reload", headers=AUTH)
    assert r.status_code == 409 and r.json()["error"] == "checksum_mismatch"
    pointer.write_text(saved)
    r = c.post(f"/v1/admin/promote/{v3}", headers=AUTH)
    assert r.status_code == 409 and r.json()["error"] == "checksum_mismatch"
    assert store.production("birds") == 1

    # v4: checksum fine, but not a loadable ONNX graph.
    junk = srv.store.parent / "junk.onnx"
    junk.write_bytes(b"this is not onnx" * 64)
    v4 = store.register(tiny_card(tiny_frontend()), junk).version
    r = c.post(f"/v1/admin/promote/{v4}", headers=AUTH)
    assert r.status_code == 409 and r.json()["error"] == "model_load_failed"
    assert c.post("/v1/admin/promote/99", headers=AUTH).status_code == 404

    # the old model kept serving, and the refusals are visible
    assert c.post("/v1/predict", content=wav(10.0), headers=RAW).json()["model"]["version"] == 1
    assert c.get("/readyz").json()["model"]["version"] == 1
    text = c.get("/metrics").text
    assert metric(text, "soundscape_model_reload_failures_total", reason="checksum_mismatch") == 2
    assert metric(text, "soundscape_model_reload_failures_total", reason="model_load_failed") == 1
    assert metric(text, "soundscape_model_reloads_total") == 2
    assert metric(text, "soundscape_model_info", version="1") == 1
    assert "refused birds v3" in srv.log() and "refused birds v4" in srv.log()


@pytest.mark.parametrize("kind", ["mel", "waveform"])
def test_in_flight_request_finishes_on_its_model(make_server, kind):
    srv = make_server(admin_token=ADMIN_TOKEN)
    stalled = StalledUpload(srv.url, wav(10.0))
    wait_in_flight(srv.client)
    ModelStore(srv.store).promote("birds", _register(srv.store, seed=5, kind=kind))
    assert srv.client.post("/v1/admin/reload", headers=AUTH).json()["served"]["version"] == 2
    r = stalled.release()
    assert r.status_code == 200 and r.json()["model"]["version"] == 1
    assert srv.client.post("/v1/predict", content=wav(6.0), headers=RAW).json()["model"]["version"] == 2


# -- limits, no model, shutdown ------------------------------------------------------------------------
def test_queue_full_and_too_busy_503(make_server):
    srv = make_server(max_queue_windows=3, max_uploads_in_progress=1)  # the stalled upload fills the upload pool
    r = srv.client.post("/v1/predict", content=wav(20.0), headers=RAW)  # 4 windows > 3
    assert r.status_code == 503 and r.json()["error"] == "queue_full" and r.headers["retry-after"] == "1"
    stalled = StalledUpload(srv.url, wav(10.0))
    wait_in_flight(srv.client)
    r = srv.client.post("/v1/predict", content=wav(6.0), headers=RAW)
    assert r.status_code == 503 and r.json()["error"] == "too_busy" and "retry-after" in r.headers
    assert stalled.release().status_code == 200
    assert srv.client.post("/v1/predict", content=wav(6.0), headers=RAW).status_code == 200
    text = srv.client.get("/metrics").text
    assert metric(text, "soundscape_rejected_requests_total", reason="queue_full") == 1
    assert metric(text, "soundscape_rejected_requests_total", reason="too_busy") == 1


def test_no_model_503_and_admin_disabled(make_server):
    srv = make_server(versions=0, ready=False, require_model="false")
    r = srv.client.get("/readyz")
    assert r.status_code == 503 and r.json()["error"] == "no_model" and "retry-after" in r.headers
    r = srv.client.post("/v1/predict", content=wav(6.0), headers=RAW)
    assert r.status_code == 503 and r.json()["error"] == "no_model"
    r = srv.client.post("/v1/admin/reload", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"] == "not_found"  # no token configured: disabled


def test_start_fails_clearly_without_a_model(tmp_path):
    import pytest

    from .conftest import Server

    with pytest.raises(RuntimeError, match="nothing good to serve"):
        Server(tmp_path, tmp_path / "empty-store")


def test_sigterm_drains_in_flight_requests(make_server):
    srv = make_server()
    stalled = StalledUpload(srv.url, wav(10.0))
    wait_in_flight(srv.client)
    srv.proc.send_signal(15)
    time.sleep(0.3)
    assert srv.proc.poll() is None  # still draining
    r = stalled.release()
    assert r.status_code == 200 and r.json()["audio"]["windows"] == 2
    # uvicorn re-raises the captured SIGTERM after its graceful shutdown, so -15 is a clean exit here
    assert srv.proc.wait(15) in (0, -15)
    assert "shut down" in srv.log() and "Traceback" not in srv.log()
