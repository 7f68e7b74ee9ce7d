"""Where the service's CPU goes under load: py-spy samples of a real ``soundscape serve`` at one concurrency.

The same server, model and files as ``bench/bench_service.py`` (its ``workload``, ``build_stores`` and
``bench_server``); while the throughput phase runs, ``py-spy record`` samples every thread of the server
process (busy samples only) and this script sums them by stage: the model (``Session.run``), decoding
(libsndfile), resampling (soxr), the log-mel front end (FFT, power, mel filter bank, dB), windowing, the event
loop (HTTP, uploads, JSON) and the rest.

py-spy is not a project dependency: ``pip install --target /tmp/pyspy py-spy`` and pass ``--py-spy
/tmp/pyspy/bin/py-spy``.

Usage::

    .venv/bin/python bench/profile_service.py --py-spy /tmp/pyspy/bin/py-spy [--precision int8]
        [--concurrency 4] [--seconds 30] [--out bench/results/service_profile.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench_service import bench_server, build_stores, workload
from machine import load_now, machine

log = logging.getLogger("bench.profile_service")

# stage -> substrings of the innermost frame (``function (file:line)``) that belong to it, first match wins
STAGES: dict[str, tuple[str, ...]] = {
    "model (ONNX Runtime)": ("Session.run",),
    "decode (libsndfile)": ("SoundFile.", "soundfile.py"),
    "resample (soxr)": ("soxr",),
    "front end (FFT, power, mel, dB)": ("pocketfft", "frontend.py", "_compressed.py", "_methods.py",
                                        "fromnumeric.py"),
    "windowing": ("functional.py", "pipeline.py"),
    "event loop (HTTP, uploads, JSON)": ("asyncio", "uvicorn", "starlette", "fastapi", "anyio", "h11",
                                         "tempfile.py", "uploads.py"),
}


def stage_of(frame: str) -> str:
    return next((stage for stage, keys in STAGES.items() if any(k in frame for k in keys)), "other")


def summarise(raw: Path) -> dict:
    """Busy samples by stage and by thread, in % of all, and the 15 hottest innermost frames."""
    stages, threads, frames, total = Counter(), Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n, parts = int(count), stack.split(";")
        total += n
        threads[parts[0].split(": ", 1)[-1]] += n
        stages[stage_of(parts[-1])] += n
        frames[parts[-1]] += n
    pct = lambda c: {k: round(100 * v / max(total, 1), 1) for k, v in c.most_common()}  # noqa: E731
    return {"samples": total, "stages_pct": pct(stages), "threads_pct": pct(threads),
            "hottest_frames_pct": dict(list(pct(frames).items())[:15])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--py-spy", required=True, help="The py-spy executable.")
    parser.add_argument("--precision", default="int8", choices=["fp32", "int8"], help="The model served.")
    parser.add_argument("--concurrency", type=int, default=4, help="Clients posting at once.")
    parser.add_argument("--seconds", type=float, default=30.0, help="Length of the throughput phase.")
    parser.add_argument("--sample-s", type=float, default=15.0, help="Seconds py-spy samples, inside that phase.")
    parser.add_argument("--out", type=Path, default=None, help="Write the summary as JSON here.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = load_now()
    with tempfile.TemporaryDirectory() as tmp:
        files = workload(Path(tmp), 3)
        stores, _ = build_stores(Path(tmp), files, 20)
        raw = Path(tmp) / "py-spy.txt"
        spy = threading.Thread(target=_record, args=(args.py_spy, raw, args.sample_s), daemon=True)
        spy.start()
        result = bench_server(stores[args.precision], files, overrides={}, latency_n=4, seconds=args.seconds,
                              concurrency=[args.concurrency])
        spy.join()
        summary = summarise(raw)
    report = {"machine": machine(started), "command": "python " + " ".join(sys.argv),
              "precision": args.precision, "concurrency": args.concurrency,
              "audio_min_per_s": result["throughput"][str(args.concurrency)]["audio_min_per_s"], **summary}
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


def _record(py_spy: str, out: Path, seconds: float, start_after_s: float = 6.0) -> None:
    """Sample the server (found by its command line) for ``seconds``, ``start_after_s`` into its life: after
    start-up, warm-up and the short latency phase, inside the throughput phase."""
    time.sleep(start_after_s)
    found = subprocess.run(["pgrep", "-f", "soundscape.cli serve"], capture_output=True, text=True).stdout.split()
    if not found:
        raise RuntimeError("no soundscape server to sample")
    env = {**os.environ, "PYTHONPATH": str(Path(py_spy).resolve().parents[1])}
    subprocess.run([py_spy, "record", "-p", found[0], "-d", str(int(seconds)), "-r", "50", "--format", "raw",
                    "-o", str(out), "--threads", "--nonblocking"], env=env, check=True, capture_output=True)


if __name__ == "__main__":
    main()
