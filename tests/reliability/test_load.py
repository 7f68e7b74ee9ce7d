"""Short load runs against real make_server: no 5xx, bounded RSS without a leak trend, 503 + Retry-After when
full, and hot reload (promote, roll back) under load with zero failed requests.

The load generator is ``bench/load.py`` (the full run writes ``bench/results/load.*``).
"""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np

from bench.load import Payload, payload_mix, run_load
from model_store import ModelStore
from tests.utils.models import DEFAULT_CODES, tiny_card, tiny_frontend, write_tiny_onnx

from .conftest import ADMIN_TOKEN, AUTH, rss_mb
from .payloads import encode, tone


def test_short_load_has_no_errors_and_no_leak_trend(make_server):
    srv = make_server(intra_op_threads=1, cpu_workers=2)
    mix = payload_mix(seconds=10.0)
    warm = run_load(srv.url, concurrency=4, duration_s=4.0, pid=srv.proc.pid, mix=mix)
    first = rss_mb(srv)
    again = run_load(srv.url, concurrency=4, duration_s=6.0, pid=srv.proc.pid, mix=mix)
    second = rss_mb(srv)
    for report in (warm, again):
        assert report.requests > 20 and report.errors == 0, report.errors_sample
        assert report.server_errors_5xx == 0 and report.transport_errors == 0
        assert report.ok > 0 and report.expected_4xx > 0
        assert report.rss_mb["peak"] < 500, report.rss_mb
    # the second run repeats the first's work: memory must not keep growing with it
    assert second - first < 40, f"RSS {first:.0f} -> {second:.0f} MB over {again.requests} more requests"
    assert srv.proc.poll() is None and "Traceback" not in srv.log()


def test_queue_full_answers_503_with_retry_after_under_load(make_server):
    """A tiny window queue and many clients: excess requests get 503 queue_full at once, none time out."""
    srv = make_server(max_queue_windows=6, batch_max_size=4, batch_max_wait_ms=50, intra_op_threads=1)
    long = encode(tone(20.0, 16000), 16000)  # 4 windows per request
    mix = [Payload("wav20", long, "audio/wav", True, 20.0)]
    report = run_load(srv.url, concurrency=8, duration_s=4.0, pid=srv.proc.pid, mix=mix, timeout_s=20)
    assert report.rejected_503 > 0 and report.ok > 0, report
    assert report.server_errors_5xx == 0 and report.transport_errors == 0, report.errors_sample
    assert report.latency_ms["max"] < 10_000
    r = srv.client.post("/v1/predict", content=long, headers={"Content-Type": "audio/wav"})
    assert r.status_code == 200  # recovers once the load stops


def test_hot_reload_under_load_fails_no_request(make_server):
    """Promote v2, roll back to v1, promote v2 again while 4 clients run: zero failures, and every response's
    named version matches the weights that produced it (one distinct output per version)."""
    srv = make_server(admin_token=ADMIN_TOKEN, intra_op_threads=1)
    fe = tiny_frontend()
    path = write_tiny_onnx(srv.store.parent / "v2.onnx", fe, len(DEFAULT_CODES), seed=42)
    ModelStore(srv.store).register(tiny_card(fe), path)
    body = encode(tone(6.0, 16000), 16000)
    outputs: dict[int, list[list[float]]] = {1: [], 2: []}
    failures: list[str] = []
    count = 0
    stop = time.monotonic() + 6.0
    lock = threading.Lock()

    def client() -> None:
        nonlocal count
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            while time.monotonic() < stop:
                try:
                    r = c.post("/v1/predict", content=body, headers={"Content-Type": "audio/wav"})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                with lock:
                    count += 1
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                        continue
                    out = r.json()
                    probs = out["windows"][0]["probabilities"]
                    outputs[out["model"]["version"]].append([probs[c] for c in DEFAULT_CODES])

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    swaps = []
    for version in (2, 1, 2, 1):
        time.sleep(1.0)
        r = srv.client.post(f"/v1/admin/promote/{version}", headers=AUTH)
        swaps.append((r.status_code, r.json().get("served", {}).get("version")))
    for t in threads:
        t.join(30)
    assert swaps == [(200, 2), (200, 1), (200, 2), (200, 1)], swaps
    assert not failures and count > 20, failures[:5]
    # batching may change the last float bits, not more: each version's outputs agree to 1e-4
    ref = {v: np.asarray(outs[0]) for v, outs in outputs.items() if outs}
    assert set(ref) == {1, 2} and np.abs(ref[1] - ref[2]).max() > 1e-2
    for v, outs in outputs.items():
        assert np.abs(np.asarray(outs) - ref[v]).max() < 1e-4, f"a response named v{v} came from other weights"
    assert ModelStore(srv.store).production("birds") == 1
