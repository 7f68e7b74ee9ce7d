"""Reproduction of issue 15's lock-out: N idle uploads (a header, then nothing) and one normal client.

Opens ``--idle`` connections from 127.0.0.2 that send a request header announcing a body and then stay silent,
then sends ``--requests`` valid uploads from 127.0.0.1 over ``--seconds`` seconds and counts how they were
answered. Before the fix every valid request got 503 ``too_busy`` while the idle uploads held the
``max_concurrent_requests`` slots; now admission comes after the body, and idle uploads time out.

Usage::

    python bench/slow_clients.py --url http://127.0.0.1:8000            # a running server
    python bench/slow_clients.py                                        # starts one on a tiny model

Results: ``bench/results/slow_clients.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

try:
    from bench.load import ServerProcess, _encode, _tiny_store
except ModuleNotFoundError:  # run as a script
    from load import ServerProcess, _encode, _tiny_store

log = logging.getLogger("slow_clients")
RESULTS = Path(__file__).resolve().parent / "results"


def open_idle_uploads(host: str, port: int, n: int, source: str = "127.0.0.2") -> list[socket.socket]:
    """``n`` connections that send an upload's header (100 kB announced) and then nothing."""
    socks = []
    header = (f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: audio/wav\r\n"
              "Content-Length: 100000\r\n\r\n").encode()
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=10, source_address=(source, 0))
        s.sendall(header)
        socks.append(s)
    return socks


def drive(url: str, body: bytes, requests: int, seconds: float) -> dict:
    """``requests`` valid uploads spread over ``seconds``: status counts and the slowest answer."""
    statuses: Counter[str] = Counter()
    slowest = 0.0
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(requests):
            t0 = time.monotonic()
            r = client.post("/v1/predict", content=body, headers={"Content-Type": "audio/wav"})
            slowest = max(slowest, time.monotonic() - t0)
            statuses[f"{r.status_code} {r.json().get('error', 'ok') if r.status_code != 200 else 'ok'}"] += 1
            time.sleep(max(0.0, seconds / requests - (time.monotonic() - t0)))
            if i % 10 == 9:
                log.info("%d requests: %s", i + 1, dict(statuses))
    return {"statuses": dict(statuses), "slowest_s": round(slowest, 3)}


def closed_after(socks: list[socket.socket], wait_s: float) -> dict:
    """How many idle connections the server closed within ``wait_s`` seconds, and what it answered them."""
    deadline = time.monotonic() + wait_s
    answers: Counter[str] = Counter()
    for s in socks:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
            answers[data.split(b"\r\n", 1)[0].decode(errors="replace") or "(closed, nothing sent)"] += 1
        except OSError:
            answers["still open"] += 1
        s.close()
    return dict(answers)


def run(url: str, idle: int, requests: int, seconds: float, wait_s: float) -> dict:
    host, port = url.split("//", 1)[1].split(":")
    socks = open_idle_uploads(host, int(port), idle)
    time.sleep(0.5)
    result = drive(url, _encode(6.0, 16000, "WAV", "PCM_16", 0), requests, seconds)
    result["idle_connections"] = closed_after(socks, wait_s)
    return {"idle_uploads": idle, "valid_requests": requests, "seconds": seconds, **result}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="A running service (default: start one on a tiny model).")
    parser.add_argument("--idle", type=int, default=64)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--wait", type=float, default=60.0, help="How long to wait for idle connections to close.")
    parser.add_argument("--label", default="", help="Recorded with the result (e.g. before/after).")
    parser.add_argument("--out", type=Path, default=RESULTS / "slow_clients.json")
    args = parser.parse_args(argv)
    if args.url:
        result = run(args.url, args.idle, args.requests, args.seconds, args.wait)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            store = _tiny_store(Path(tmp) / "store")
            with ServerProcess(store, Path(tmp) / "server.log") as srv:
                result = run(srv.url, args.idle, args.requests, args.seconds, args.wait)
    result = {"label": args.label, "command": "python bench/slow_clients.py " + " ".join(argv or sys.argv[1:]),
              **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(args.out.read_text()) if args.out.exists() else []
    args.out.write_text(json.dumps([*[r for r in runs if r.get("label") != args.label], result], indent=2) + "\n")
    log.info("%s", json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
