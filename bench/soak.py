"""Soak test: a long run of mixed clients against a real service, sampling its resources every 10 s.

For ``--minutes`` (30 by default) ``--concurrency`` client threads (8) upload the seeded mix of
``bench/load.py`` (valid WAV/FLAC and one invalid upload in four); beside them, slow clients trickle uploads
(one chunk a second, answered normally), silent clients send a header and nothing (408 after the body idle
timeout), disconnecting clients send half a body and hang up (499), and two hot reloads happen (promote v2 at
a third of the run, back to v1 at two thirds). Every valid answer is compared with the answer to the same
upload sent alone to the same model version. Every 10 s the server's RSS, open file descriptors, temporary
files (in its own ``TMPDIR``: files there and descriptors on deleted ones) and threads are recorded.

Results: ``bench/results/soak.json`` (every sample) and ``soak.md`` (``--out``): counts by status, 5xx,
wrong answers, and each resource's start, end, peak and slope (per minute, over the whole run and its
second half).

Usage::

    python bench/soak.py                     # 30 minutes, the acceptance run
    python bench/soak.py --minutes 2         # a short check of the script itself
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

try:
    from bench.load import Payload, ServerProcess, payload_mix
    from bench.machine import load_now, machine
except ModuleNotFoundError:  # run as a script: bench/ itself is on sys.path
    from load import Payload, ServerProcess, payload_mix
    from machine import load_now, machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TOKEN = "soak-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SAMPLE_S = 10.0
# The server under soak: a short body idle timeout so silent clients are cut during the run.
SERVER_SETTINGS = {"admin_token": TOKEN, "body_idle_timeout_s": 5, "header_timeout_s": 5, "cpu_workers": 2,
                   "intra_op_threads": 1}

log = logging.getLogger("soak")


@dataclass
class Tally:
    """What the clients saw (thread-safe through ``lock``)."""

    statuses: Counter = field(default_factory=Counter)
    by_kind: dict = field(default_factory=dict)
    wrong: list = field(default_factory=list)
    server_errors: int = 0
    transport_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, status: int | str) -> None:
        with self.lock:
            self.statuses[str(status)] += 1
            self.by_kind.setdefault(kind, Counter())[str(status)] += 1
            if isinstance(status, int) and status >= 500 and status != 503:
                self.server_errors += 1


def _matrix(answer: dict) -> np.ndarray:
    return np.asarray([[w["probabilities"][k] for k in sorted(w["probabilities"])] for w in answer["windows"]])


def references(url: str, valid: list[Payload]) -> dict[tuple[str, int], np.ndarray]:
    """Each valid payload's answer from each version, sent alone (v2 promoted and v1 restored around it)."""
    refs = {}
    with httpx.Client(base_url=url, timeout=60) as c:
        for version in (1, 2, 1):
            assert c.post(f"/v1/admin/promote/{version}", headers=AUTH).status_code == 200
            for p in valid:
                r = c.post("/v1/predict", content=p.body, headers={"Content-Type": p.content_type})
                r.raise_for_status()
                refs[(p.name, version)] = _matrix(r.json())
    return refs


def client(url: str, mix: list[Payload], k: int, stop: threading.Event, tally: Tally, refs: dict) -> None:
    """One client thread: the mix, each valid answer checked against its reference."""
    with httpx.Client(base_url=url, timeout=60) as c:
        i = k
        while not stop.is_set():
            p = mix[i % len(mix)]
            i += 1
            try:
                r = c.post("/v1/predict", content=p.body, headers={"Content-Type": p.content_type})
            except httpx.HTTPError as exc:
                with tally.lock:
                    tally.transport_errors += 1
                    tally.wrong.append(f"{p.name}: {type(exc).__name__}: {exc}"[:300])
                continue
            tally.add("valid" if p.valid else "invalid", r.status_code)
            _check(p, r, tally, refs)


def _check(p: Payload, r: httpx.Response, tally: Tally, refs: dict) -> None:
    problem = None
    if p.valid and r.status_code == 200:
        answer = r.json()
        ref = refs[(p.name, answer["model"]["version"])]
        got = _matrix(answer)
        if got.shape != ref.shape or np.abs(got - ref).max() > 1e-4:
            problem = f"{p.name}: v{answer['model']['version']} answer differs from its reference"
    elif p.valid and r.status_code != 503:
        problem = f"{p.name}: {r.status_code} {r.text[:200]}"
    elif not p.valid and not 400 <= r.status_code < 500:
        problem = f"{p.name} (invalid): {r.status_code} {r.text[:200]}"
    if problem:
        with tally.lock:
            tally.wrong.append(problem)


def _raw(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].split(":")
    return host, int(port)


def _header(host: str, n: int, content_type: str) -> bytes:
    return (f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {n}\r\n\r\n").encode()


def _status_of(sock: socket.socket) -> int | str:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and data.startswith(b"HTTP/1.1 "):
                break
    except OSError as exc:
        return type(exc).__name__
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else "closed"


def slow_client(url: str, p: Payload, stop: threading.Event, tally: Tally, chunks: int = 6) -> None:
    """Uploads trickled in ``chunks`` pieces a second apart (under the idle timeout): answered normally."""
    host, port = _raw(url)
    while not stop.is_set():
        with socket.create_connection((host, port), timeout=60) as s:
            s.sendall(_header(host, len(p.body), p.content_type))
            step = -(-len(p.body) // chunks)
            for a in range(0, len(p.body), step):
                s.sendall(p.body[a : a + step])
                stop.wait(1.0)
            tally.add("slow", _status_of(s))


def silent_client(url: str, stop: threading.Event, tally: Tally) -> None:
    """A header announcing a body that never comes: 408 after the body idle timeout, then closed."""
    host, port = _raw(url)
    while not stop.is_set():
        with socket.create_connection((host, port), timeout=60) as s:
            s.sendall(_header(host, 100_000, "audio/wav"))
            tally.add("silent", _status_of(s))
        stop.wait(2.0)


def disconnecting_client(url: str, p: Payload, stop: threading.Event, tally: Tally) -> None:
    """Half a body, then hang up (the server counts 499 and frees the upload)."""
    host, port = _raw(url)
    while not stop.is_set():
        with socket.create_connection((host, port), timeout=60) as s:
            s.sendall(_header(host, len(p.body), p.content_type) + p.body[: len(p.body) // 2])
            stop.wait(0.3)
        tally.add("disconnect", "hung up")
        stop.wait(1.0)


def resources(pid: int, tmpdir: Path, ignore: frozenset[str] = frozenset()) -> dict:
    """RSS (MB), open descriptors, temporary files (but ``ignore``: there before any upload) and threads."""
    proc = psutil.Process(pid)
    links = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            links.append(os.readlink(fd))
        except OSError:
            continue
    temp_open = sum(1 for t in links if t.startswith(str(tmpdir)))
    temp_listed = sum(1 for p in tmpdir.iterdir() if p.name not in ignore)
    return {"rss_mb": round(proc.memory_info().rss / 2**20, 1), "fds": proc.num_fds(),
            "temp_files": max(temp_open, temp_listed), "threads": proc.num_threads()}


def _server_metrics(url: str) -> dict[str, float]:
    keep = ("soundscape_requests_in_flight", "soundscape_uploads_in_progress", "soundscape_queue_depth_windows")
    text = httpx.get(url + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in keep:
            out[name] = float(line.rsplit(" ", 1)[1])
        elif name == "soundscape_http_requests_total":
            status = line.split('status="', 1)[1].split('"', 1)[0]
            out[f"http_{status}"] = out.get(f"http_{status}", 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def _slope(samples: list[dict], key: str, half: bool = False) -> float | None:
    pts = [(s["t_s"], s[key]) for s in samples if not half or s["t_s"] >= samples[-1]["t_s"] / 2]
    if len(pts) < 3:
        return None
    return round(float(np.polyfit([t for t, _ in pts], [v for _, v in pts], 1)[0]) * 60, 3)


def summarise(samples: list[dict]) -> dict:
    """Start, end, peak and slopes (per minute: whole run, second half) of each resource."""
    out = {}
    for key in ("rss_mb", "fds", "temp_files", "threads"):
        values = [s[key] for s in samples]
        out[key] = {"start": values[0], "end": values[-1], "peak": max(values),
                    "slope_per_min": _slope(samples, key), "slope_per_min_second_half": _slope(samples, key, True)}
    return out


def soak(url: str, pid: int, tmpdir: Path, minutes: float, concurrency: int) -> dict:
    """Run the clients for ``minutes`` and sample the server every 10 s."""
    ignore = frozenset(p.name for p in tmpdir.iterdir())  # ONNX Runtime's .ses file, made at start-up
    mix = payload_mix(seconds=20.0)
    valid = list({p.name: p for p in mix if p.valid}.values())
    refs = references(url, valid)
    tally, stop = Tally(), threading.Event()
    threads = [threading.Thread(target=client, args=(url, mix, k, stop, tally, refs), daemon=True)
               for k in range(concurrency)]
    threads += [threading.Thread(target=slow_client, args=(url, valid[0], stop, tally), daemon=True),
                threading.Thread(target=silent_client, args=(url, stop, tally), daemon=True),
                threading.Thread(target=disconnecting_client, args=(url, valid[1], stop, tally), daemon=True)]
    start = time.monotonic()
    end = start + minutes * 60
    reloads = [(end - start) / 3, 2 * (end - start) / 3]
    samples, reloaded = [], []
    for t in threads:
        t.start()
    while (now := time.monotonic()) < end:
        if reloads and now - start >= reloads[0]:
            reloads.pop(0)
            version = 2 if not reloaded else 1
            r = httpx.post(f"{url}/v1/admin/promote/{version}", headers=AUTH, timeout=60)
            reloaded.append({"t_s": round(now - start, 1), "version": version, "status": r.status_code})
            log.info("hot reload to v%d: %d", version, r.status_code)
        samples.append({"t_s": round(now - start, 1), **resources(pid, tmpdir, ignore), **_server_metrics(url)})
        log.info("%s", samples[-1])
        time.sleep(max(0.0, min(SAMPLE_S - (time.monotonic() - now), end - time.monotonic())))
    stop.set()
    for t in threads:
        t.join(90)
    time.sleep(SAMPLE_S)  # the silent clients' last 408s and the last uploads' clean-up
    samples.append({"t_s": round(time.monotonic() - start, 1), **resources(pid, tmpdir, ignore), **_server_metrics(url),
                    "after_clients_stopped": True})
    return {"minutes": minutes, "concurrency": concurrency, "reloads": reloaded, "temp_files_ignored": sorted(ignore),
            "statuses": dict(sorted(tally.statuses.items())),
            "by_client_kind": {k: dict(sorted(v.items())) for k, v in tally.by_kind.items()},
            "server_errors_5xx": tally.server_errors, "transport_errors": tally.transport_errors,
            "wrong_answers": len(tally.wrong), "wrong_sample": tally.wrong[:10],
            "resources": summarise(samples), "samples": samples}


def write_results(result: dict, out: Path) -> None:
    """``<out>.json`` (everything) and ``<out>.md`` (the summary)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    last = result["samples"][-1]
    rows = [
        ("command", f"`{result['command']}`"),
        ("minutes / client threads", f"{result['minutes']} / {result['concurrency']} + slow, silent, disconnecting"),
        ("hot reloads (t s, version, status)", ", ".join(f"{r['t_s']} v{r['version']} {r['status']}"
                                                         for r in result["reloads"])),
        ("answers seen by clients", ", ".join(f"{k}: {v}" for k, v in result["statuses"].items())),
        ("by client kind", "; ".join(f"{k} {v}" for k, v in result["by_client_kind"].items())),
        ("server's own count (status: n)", ", ".join(f"{k[5:]}: {int(v)}" for k, v in last.items()
                                                     if k.startswith("http_"))),
        ("5xx (other than 503 busy) / transport errors", f"{result['server_errors_5xx']} / "
                                                         f"{result['transport_errors']}"),
        ("wrong answers (valid uploads compared with their reference)", result["wrong_answers"]),
    ]
    md = [f"# Soak test ({result['minutes']} min)", "", result["note"], "", "| | |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in rows]
    md += ["", "| resource | start | end | peak | slope /min | slope /min, 2nd half |",
           "|---|---:|---:|---:|---:|---:|"]
    for key, r in result["resources"].items():
        md.append(f"| {key} | {r['start']} | {r['end']} | {r['peak']} | {r['slope_per_min']} | "
                  f"{r['slope_per_min_second_half']} |")
    md += ["", f"Sampled every {SAMPLE_S:g} s (the last sample 10 s after the clients stopped); machine: "
           f"{result['machine']}."]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--note", default="", help="A line written at the top of the report.")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak")
    args = parser.parse_args(argv)
    load_start = load_now()
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, str(ROOT))
        from model_store import ModelStore
        from tests.utils.models import make_store

        store = make_store(Path(tmp) / "store", versions=2)
        ModelStore(store.root).promote("birds", 1)
        spool = Path(tmp) / "server-tmp"
        spool.mkdir()
        saved = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = str(spool)  # the server's temporary files go here, to be counted
        try:
            srv = ServerProcess(store.root, Path(tmp) / "server.log", **SERVER_SETTINGS)
        finally:
            os.environ.pop("TMPDIR") if saved is None else os.environ.update(TMPDIR=saved)
        with srv:
            result = soak(srv.url, srv.proc.pid, spool, args.minutes, args.concurrency)
        server_log = (Path(tmp) / "server.log").read_text(errors="replace")
    result = {"command": f"python bench/soak.py --minutes {args.minutes:g} --concurrency {args.concurrency}",
              "note": args.note, "machine": machine(load_start), "settings": SERVER_SETTINGS | {"admin_token": "***"},
              "server_log_tracebacks": server_log.count("Traceback"), **result}
    write_results(result, args.out)
    print(args.out.with_suffix(".md").read_text())
    ok = not result["server_errors_5xx"] and not result["wrong_answers"] and not result["server_log_tracebacks"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
