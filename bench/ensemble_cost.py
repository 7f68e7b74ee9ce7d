"""Serving cost of ensembles (not a test): ONNX Runtime latency of one batch, single model vs ensembles.

Models: ``tf_efficientnet_lite0`` at the default front end (128 mels x 313 frames), random weights (they time
the same as trained ones), exported with ``training.export.export_onnx`` exactly as ``soundscape export``
does: one model, and ensembles of 2 and 3 members as ONE graph (``export_onnx([m1, m2, ...])``, parity
checked against PyTorch). Each file is run through an ONNX Runtime session set up like the service's
(``soundscape.inference.Engine``: ``ORT_ENABLE_ALL``, one inter-op thread; here without spin-waiting, so
one session's idle workers do not slow the next case) with 1 and 2 intra-op threads,
on batches of 12 windows (one minute of audio at the default 5 s windows). Runs are interleaved across
the six (model, threads) cases so that load from other users of the machine spreads over all of them;
the median of ``--repeats`` runs is reported, with the 10th-90th percentile spread. Besides wall time, the
process CPU time of each run is recorded: on a busy machine it is the steadier measure of the work a
model costs (with 2 threads it adds up both threads' time, so it also shows threading overhead).

The machine is shared: ``os.getloadavg()`` is recorded at the start and the end, and the results are
labelled "not idle" when a 1-minute load is above 1.0.

Usage::

    .venv/bin/python bench/ensemble_cost.py            # writes bench/results/ensemble_cost.{json,md}
    .venv/bin/python bench/ensemble_cost.py --repeats 5 --out /tmp/ens   # quick look
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from soundscape.audio import Frontend, FrontendConfig  # noqa: E402

log = logging.getLogger("ensemble_cost")
ARCH = "tf_efficientnet_lite0"
SIZES = (1, 2, 3)


def images_of_noise(frontend: FrontendConfig, n: int, seed: int = 0) -> np.ndarray:
    """``n`` log-mel images of pink-ish noise made by the serving front end (for parity and timing)."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((n, frontend.window_samples)).astype(np.float32)
    pink = np.cumsum(white, axis=1)
    pink -= pink.mean(axis=1, keepdims=True)
    audio = (0.1 * pink / pink.std(axis=1, keepdims=True) + 0.05 * white).astype(np.float32)
    return Frontend(frontend)(audio)[:, None]


def export_models(work: Path, frontend: FrontendConfig, n_labels: int) -> dict[int, dict]:
    """Export a single lite0 and ensembles of 2 and 3 (members seeded 0, 1, 2) as ONNX files."""
    import torch
    from timm.layers import set_layer_config

    from training.export import export_onnx
    from training.models import create_model

    members = []
    for seed in range(max(SIZES)):
        torch.manual_seed(seed)
        with set_layer_config(exportable=True):
            members.append(create_model(ARCH, num_classes=n_labels, pretrained=False).eval())
    parity = images_of_noise(frontend, 8, seed=1)
    out = {}
    for k in SIZES:
        path = work / f"lite0x{k}.onnx"
        t0 = time.perf_counter()
        res = export_onnx(members[0] if k == 1 else members[:k], path, parity)
        out[k] = {"path": path, "export_s": time.perf_counter() - t0, "mb": path.stat().st_size / 1e6,
                  "embedding_dim": res.embedding_dim, "parity": res.parity()}
        log.info("exported %d member(s): %.1f MB in %.0f s", k, out[k]["mb"], out[k]["export_s"])
    return out


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()  # as soundscape.inference.Engine, but:
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # no spin-waiting: a 2-thread session's worker keeps spinning after its run and would eat the CPU of the
    # case timed next (measured: the single model's CPU time went from 63 to 93 ms when timed after one)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def measure(models: dict[int, dict], batch: np.ndarray, threads: tuple[int, ...], repeats: int) -> list[dict]:
    cases = [(k, t) for t in threads for k in SIZES]
    sessions = {(k, t): session(models[k]["path"], t) for k, t in cases}
    feed = {"image": np.ascontiguousarray(batch, dtype=np.float32)}
    for s in sessions.values():  # warm-up: first runs allocate
        s.run(None, feed)
        s.run(None, feed)
    times: dict[tuple[int, int], list[float]] = {c: [] for c in cases}
    cpu: dict[tuple[int, int], list[float]] = {c: [] for c in cases}
    for r in range(repeats):
        for c in cases:  # interleaved
            c0, t0 = time.process_time(), time.perf_counter()
            sessions[c].run(["logits"], feed)
            times[c].append((time.perf_counter() - t0) * 1000)
            cpu[c].append((time.process_time() - c0) * 1000)
        log.info("round %d/%d: %s", r + 1, repeats, {f"x{k}/{t}t": round(times[(k, t)][-1]) for k, t in cases})
    rows = []
    for k, t in cases:
        ms, cpu_ms = np.array(times[(k, t)]), np.array(cpu[(k, t)])
        single, single_cpu = float(np.median(times[(1, t)])), float(np.median(cpu[(1, t)]))
        rows.append({"members": k, "threads": t, "median_ms": float(np.median(ms)),
                     "p10_ms": float(np.percentile(ms, 10)), "p90_ms": float(np.percentile(ms, 90)),
                     "ms_per_window": float(np.median(ms)) / len(batch),
                     "vs_single": float(np.median(ms)) / single,
                     "median_cpu_ms": float(np.median(cpu_ms)), "cpu_vs_single": float(np.median(cpu_ms)) / single_cpu,
                     "runs_ms": [round(x, 2) for x in ms], "runs_cpu_ms": [round(x, 2) for x in cpu_ms]})
    return rows


def markdown(result: dict) -> str:
    lines = [
        f"# Ensemble serving cost ({result['label']})",
        "",
        f"`bench/ensemble_cost.py`, {result['date']}: {ARCH} (random weights) at {result['image']} log-mel images, "
        f"{result['n_labels']} labels; ONE ONNX graph per ensemble (mean of the members' probabilities, "
        f"concatenated embeddings), exported and parity-checked by `training.export`. ONNX Runtime "
        f"{result['onnxruntime']} CPU, session options as the service's (no spin-waiting), one batch of "
        f"{result['batch']} windows "
        f"({result['batch'] * result['window_s']:.0f} s of audio), median of {result['repeats']} interleaved runs "
        "(p10-p90 in brackets).",
        "",
        f"Machine: {result['machine']['cpus']} CPUs, {result['machine']['processor']}; load average (1, 5, 15 min) "
        f"{result['loadavg_start']} at the start, {result['loadavg_end']} at the end: **{result['label']}** "
        "(the machine is shared; absolute numbers carry that noise, the ratios less so).",
        "",
        f"| members | threads | wall ms / batch of {result['batch']} | wall ms / window | wall x single "
        "| CPU ms / batch | CPU x single | model MB | embedding dim |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        m = result["models"][str(r["members"])]
        lines.append(f"| {r['members']} | {r['threads']} | {r['median_ms']:.0f} ({r['p10_ms']:.0f}-{r['p90_ms']:.0f}) "
                     f"| {r['ms_per_window']:.1f} | {r['vs_single']:.2f} | {r['median_cpu_ms']:.0f} "
                     f"| {r['cpu_vs_single']:.2f} | {m['mb']:.1f} | {m['embedding_dim']} |")
    by = {(r["members"], r["threads"]): r for r in result["rows"]}
    threads = sorted({r["threads"] for r in result["rows"]})
    lines += ["", "Cost per member: " + "; ".join(
        f"{t} thread(s): ensemble of " + ", of ".join(
            f"{k} {by[(k, t)]['cpu_vs_single']:.2f}x CPU / {by[(k, t)]['vs_single']:.2f}x wall" for k in SIZES[1:])
        + " the single model's" for t in threads) + ". The members share only the input image (the front end "
        "runs once per window either way), so an ensemble of K costs about K single models."]
    lines += ["", "Export (dynamo, parity on 8 noise windows): " + "; ".join(
        f"{k} member(s) {m['export_s']:.0f} s, tolerance used {m['parity']['tolerance_used']:.2g}"
        for k, m in result["models"].items()) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown-only", action="store_true",
                        help="Rewrite the .md from the existing .json (no measurement).")
    parser.add_argument("--repeats", type=int, default=21, help="Timed runs per case (median reported).")
    parser.add_argument("--batch", type=int, default=12, help="Windows per run.")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="Intra-op thread counts.")
    parser.add_argument("--n-labels", type=int, default=14, help="Classifier outputs (the bundled model's 14).")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ensemble_cost",
                        help="Output path without suffix (.json and .md are written).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.markdown_only:
        args.out.with_suffix(".md").write_text(markdown(json.loads(args.out.with_suffix(".json").read_text())))
        return 0
    import onnxruntime as ort

    load_start = [round(x, 2) for x in os.getloadavg()]
    frontend = FrontendConfig()
    with tempfile.TemporaryDirectory(prefix="ensemble-cost-") as tmp:
        models = export_models(Path(tmp), frontend, args.n_labels)
        batch = images_of_noise(frontend, args.batch, seed=2)
        rows = measure(models, batch, tuple(args.threads), args.repeats)
    load_end = [round(x, 2) for x in os.getloadavg()]
    busy = max(load_start[0], load_end[0]) > 1.0
    result = {
        "benchmark": "ensemble_cost", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "label": "not idle" if busy else "idle", "loadavg_start": load_start, "loadavg_end": load_end,
        "arch": ARCH, "weights": "random", "image": list(frontend.image_shape), "window_s": frontend.window_s,
        "n_labels": args.n_labels,
        "batch": args.batch, "repeats": args.repeats, "onnxruntime": ort.__version__,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "models": {str(k): {kk: v for kk, v in m.items() if kk != "path"} for k, m in models.items()},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
