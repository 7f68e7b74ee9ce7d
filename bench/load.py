"""Load test: N concurrent clients for T seconds, mixing valid and invalid uploads, against a real service.

Each client thread loops over a fixed, seeded mix of payloads (valid WAV/FLAC recordings and invalid
uploads: random bytes, a truncated WAV, a header declaring 10 hours, a text body) and records status and
latency; a sampler records the server's RSS. The report gives requests, errors (transport errors and
5xx), status counts, p50/p95/p99 latency, throughput and RSS at start, end and peak, plus the RSS slope
over the second half of the run (a leak shows as a steady positive slope).

Usage::

    python bench/load.py --concurrency 8 --duration 60                     # starts a server itself
    python bench/load.py --store /models --concurrency 8 --duration 60     # ... serving that store
    python bench/load.py --url http://127.0.0.1:8000 --pid 1234            # an already running server

Results go to ``bench/results/load.json`` and ``load.md`` (``--out``). Without ``--store``/``--url`` the
server serves a tiny linear ONNX model (``tests/utils/models.py``), so the numbers measure the service
path (HTTP, upload, decode, front end, batching) rather than a CNN.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil
import soundfile as sf

try:
    from bench.machine import load_now, machine
except ModuleNotFoundError:  # run as a script (python bench/load.py): bench/ itself is on sys.path
    from machine import load_now, machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

__all__ = ["LoadReport", "Payload", "ServerProcess", "payload_mix", "run_load"]


@dataclass(frozen=True)
class Payload:
    """One kind of upload: body, content type, and whether a 200 is expected."""

    name: str
    body: bytes
    content_type: str
    valid: bool
    audio_s: float = 0.0


def _encode(seconds: float, rate: int, fmt: str, subtype: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    sig = (0.3 * np.sin(2 * np.pi * (800 + 200 * t) * t) + 0.05 * rng.normal(size=t.shape)).astype(np.float32)
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=rate, channels=1, format=fmt, subtype=subtype) as f:
        for a in range(0, len(sig), rate):
            f.write(sig[a : a + rate])
    return buf.getvalue()


def _wav_header_10h(rate: int = 32000) -> bytes:
    data_bytes = 10 * 3600 * rate * 2
    fmt = (b"fmt " + (16).to_bytes(4, "little") + (1).to_bytes(2, "little") + (1).to_bytes(2, "little")
           + rate.to_bytes(4, "little") + (rate * 2).to_bytes(4, "little") + (2).to_bytes(2, "little")
           + (16).to_bytes(2, "little"))
    return (b"RIFF" + (36 + data_bytes).to_bytes(4, "little") + b"WAVE" + fmt + b"data"
            + data_bytes.to_bytes(4, "little") + bytes(64000))


def payload_mix(seconds: float = 20.0, invalid_every: int = 4) -> list[Payload]:
    """The seeded payload cycle: ``invalid_every - 1`` valid uploads for each invalid one.

    Args:
        seconds (float): length of the valid recordings. (Default: ``20.0``)
        invalid_every (int): one payload in this many is invalid. (Default: ``4``)

    Returns:
        list[Payload]: the cycle each client walks through (from a per-client offset).
    """
    wav = _encode(seconds, 32000, "WAV", "PCM_16", 0)
    flac = _encode(seconds, 48000, "FLAC", "PCM_16", 1)
    valid = [Payload("wav32k", wav, "audio/wav", True, seconds), Payload("flac48k", flac, "audio/flac", True, seconds)]
    invalid = [
        Payload("random_bytes", np.random.default_rng(2).bytes(50_000), "audio/wav", False),
        Payload("truncated_wav", wav[: len(wav) // 3], "audio/wav", False),
        Payload("header_10h", _wav_header_10h(), "audio/wav", False),
        Payload("text_body", b"hello " * 1000, "text/plain", False),
    ]
    mix: list[Payload] = []
    vi = ii = 0
    while ii < len(invalid):
        for _ in range(invalid_every - 1):
            mix.append(valid[vi % len(valid)])
            vi += 1
        mix.append(invalid[ii])
        ii += 1
    return mix


@dataclass
class LoadReport:
    """What a load run measured (latencies in ms, RSS in MB)."""

    url: str
    concurrency: int
    duration_s: float
    requests: int = 0
    ok: int = 0
    expected_4xx: int = 0
    rejected_503: int = 0
    server_errors_5xx: int = 0
    transport_errors: int = 0
    unexpected: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    valid_latency_ms: dict[str, float] = field(default_factory=dict)
    throughput_rps: float = 0.0
    audio_minutes_per_s: float = 0.0
    rss_mb: dict[str, float] = field(default_factory=dict)
    rss_slope_mb_per_min: float | None = None
    model_versions: dict[str, int] = field(default_factory=dict)
    errors_sample: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        """Requests that failed: 5xx, transport errors, and answers other than the expected class."""
        return self.server_errors_5xx + self.transport_errors + self.unexpected


def _pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values) * 1000
    return {"p50": round(float(np.percentile(a, 50)), 1), "p95": round(float(np.percentile(a, 95)), 1),
            "p99": round(float(np.percentile(a, 99)), 1), "max": round(float(a.max()), 1)}


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:
        return None


def run_load(url: str, *, concurrency: int, duration_s: float, pid: int | None = None,
             mix: list[Payload] | None = None, timeout_s: float = 60.0, on_tick=None) -> LoadReport:
    """Drive ``url`` with ``concurrency`` client threads for ``duration_s`` seconds.

    Args:
        url (str): the service's base URL (loopback).
        concurrency (int): client threads, each with one keep-alive connection.
        duration_s (float): how long clients start new requests.
        pid (int, optional): the server's process id, for RSS samples. (Default: no RSS)
        mix (list[Payload], optional): payload cycle. (Default: :func:`payload_mix`)
        timeout_s (float): per-request timeout; a request over it counts as a transport error.
        on_tick (callable, optional): called about every 0.25 s from the sampler thread (for fault
            injection while clients run).

    Returns:
        LoadReport: the counts, latencies and RSS samples.
    """
    mix = mix or payload_mix()
    report = LoadReport(url=url, concurrency=concurrency, duration_s=duration_s)
    lock = threading.Lock()
    statuses: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    latencies: list[float] = []
    valid_latencies: list[float] = []
    audio_s = 0.0
    rss: list[tuple[float, float]] = []
    start = time.monotonic()
    stop_at = start + duration_s
    done = threading.Event()

    def client(k: int) -> None:
        nonlocal audio_s
        with httpx.Client(base_url=url, timeout=timeout_s) as c:
            i = k
            while time.monotonic() < stop_at:
                p = mix[i % len(mix)]
                i += 1
                t0 = time.perf_counter()
                try:
                    r = c.post("/v1/predict", content=p.body, headers={"Content-Type": p.content_type})
                except httpx.HTTPError as exc:
                    with lock:
                        report.requests += 1
                        report.transport_errors += 1
                        if len(report.errors_sample) < 10:
                            report.errors_sample.append(f"{p.name}: {type(exc).__name__}: {exc}")
                    continue
                took = time.perf_counter() - t0
                with lock:
                    report.requests += 1
                    statuses[str(r.status_code)] += 1
                    latencies.append(took)
                    busy = (r.status_code == 503 and "retry-after" in r.headers
                            and r.json().get("error") in ("queue_full", "too_busy"))
                    if busy:  # back-pressure, the documented answer when full: not an error
                        report.rejected_503 += 1
                    elif r.status_code >= 500:
                        report.server_errors_5xx += 1
                    elif p.valid and r.status_code == 200:
                        report.ok += 1
                        valid_latencies.append(took)
                        audio_s += p.audio_s
                        versions[str(r.json()["model"]["version"])] += 1
                    elif not p.valid and 400 <= r.status_code < 500 and "error" in r.json():
                        report.expected_4xx += 1
                    elif r.status_code < 500:
                        report.unexpected += 1
                    failed = r.status_code >= 500 or (p.valid and r.status_code != 200)
                    if failed and not busy and len(report.errors_sample) < 10:
                        report.errors_sample.append(f"{p.name}: {r.status_code} {r.text[:200]}")

    def sampler() -> None:
        while not done.is_set():
            value = _rss_mb(pid)
            if value is not None:
                rss.append((time.monotonic() - start, value))
            if on_tick is not None:
                on_tick(time.monotonic() - start)
            done.wait(0.25)

    rss_start = _rss_mb(pid)
    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration_s + timeout_s + 30)
    wall = time.monotonic() - start
    done.set()
    watcher.join(5)
    rss_end = _rss_mb(pid)

    report.status_counts = dict(sorted(statuses.items()))
    report.model_versions = dict(sorted(versions.items()))
    report.latency_ms = _pct(latencies)
    report.valid_latency_ms = _pct(valid_latencies)
    report.throughput_rps = round(report.requests / wall, 2)
    report.audio_minutes_per_s = round(audio_s / 60 / wall, 3)
    if rss_start is not None and rss:
        peak = max(v for _, v in rss)
        report.rss_mb = {"start": round(rss_start, 1), "end": round(rss_end or rss[-1][1], 1),
                         "peak": round(peak, 1)}
        half = [(t, v) for t, v in rss if t >= wall / 2]
        if len(half) >= 4:
            slope = np.polyfit([t for t, _ in half], [v for _, v in half], 1)[0]
            report.rss_slope_mb_per_min = round(float(slope) * 60, 2)
    return report


# -- a server to test ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``soundscape serve`` on a free 127.0.0.1 port, stopped with SIGTERM (context manager)."""

    def __init__(self, store: Path, log_path: Path, **settings: object) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDSCAPE_")}
        env["SOUNDSCAPE_STORE_PATH"] = str(store)
        env.update({f"SOUNDSCAPE_{k.upper()}": str(v) for k, v in settings.items()})
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.log_path = log_path
        self.proc = subprocess.Popen([sys.executable, "-m", "soundscape.cli", "serve", "--port", str(self.port)],
                                     env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready after 120 s: {log_path.read_text()[-2000:]}")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tiny_store(root: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.utils.models import make_store

    make_store(root, versions=1)
    return root


def write_results(report: LoadReport, out: Path, extra: dict) -> None:
    if isinstance(extra.get("machine"), list):  # the load average at the start: now the whole record
        extra = {**extra, "machine": machine(extra["machine"])}
    """``<out>.json`` (everything) and ``<out>.md`` (a table)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {**extra, **asdict(report), "errors": report.errors}
    out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    lat, vlat, rss = report.latency_ms, report.valid_latency_ms, report.rss_mb
    rows = [
        ("model", extra.get("model", "")),
        ("machine", extra.get("machine", "")),
        ("duration (s)", report.duration_s),
        ("concurrency", report.concurrency),
        ("requests", report.requests),
        ("valid 200 / expected 4xx / 503 busy", f"{report.ok} / {report.expected_4xx} / {report.rejected_503}"),
        ("errors (5xx other than busy + transport + unexpected)",
         f"{report.errors} ({report.server_errors_5xx} + {report.transport_errors} + {report.unexpected})"),
        ("status counts", ", ".join(f"{k}: {v}" for k, v in report.status_counts.items())),
        ("latency p50 / p95 / p99, all (ms)", f"{lat.get('p50')} / {lat.get('p95')} / {lat.get('p99')}"),
        ("latency p50 / p95 / p99, valid (ms)", f"{vlat.get('p50')} / {vlat.get('p95')} / {vlat.get('p99')}"),
        ("throughput (req/s)", report.throughput_rps),
        ("audio minutes per second", report.audio_minutes_per_s),
        ("RSS start / end / peak (MB)", f"{rss.get('start')} / {rss.get('end')} / {rss.get('peak')}"),
        ("RSS slope, second half (MB/min)", report.rss_slope_mb_per_min),
    ]
    md = ["# Load test", "", f"`{extra.get('command', '')}`", "", "| metric | value |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in rows]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="A running service (default: start one).")
    parser.add_argument("--pid", type=int, help="The running service's pid, for RSS (with --url).")
    parser.add_argument("--store", type=Path, help="Store to serve when starting a server (default: a tiny one).")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="Length of the valid recordings.")
    parser.add_argument("--invalid-every", type=int, default=4, help="One upload in N is invalid.")
    parser.add_argument("--out", type=Path, default=RESULTS / "load")
    args = parser.parse_args(argv)
    mix = payload_mix(args.seconds, args.invalid_every)
    extra = {"command": "python bench/load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
             "machine": load_now(),  # replaced by machine(...) when the run ends
             "valid_recording_s": args.seconds, "invalid_every": args.invalid_every}
    if args.url:
        report = run_load(args.url, concurrency=args.concurrency, duration_s=args.duration, pid=args.pid, mix=mix)
        extra["model"] = "(external server)"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            store = args.store or _tiny_store(Path(tmp) / "store")
            with ServerProcess(store, Path(tmp) / "server.log") as srv:
                served = httpx.get(srv.url + "/readyz").json()["model"]
                extra["model"] = f"{served['name']} v{served['version']}" + ("" if args.store else " (tiny linear)")
                report = run_load(srv.url, concurrency=args.concurrency, duration_s=args.duration,
                                  pid=srv.proc.pid, mix=mix)
    write_results(report, args.out, extra)
    print(args.out.with_suffix(".md").read_text())
    return 0 if report.errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
