"""Front-end speed for one minute of audio: 12 windows of 5 s at 32 kHz -> (12, 128, 313) images.

Compares the serving front end (numpy/scipy, :class:`soundscape.audio.Frontend`) with the same front
end as an ONNX graph (opset 17 ``STFT`` op, run by onnxruntime) and with torchaudio eager
(:class:`soundscape.audio.transforms.LogMelSpectrogram`), each with 1 and 2 threads. Each variant runs
in its own block (interleaving lets the spin-waiting thread pools of torch and onnxruntime steal the
cores from the next variant), and the block sequence is repeated ``--rounds`` times so load from other
processes hits every variant alike.

Usage::

    .venv/bin/python bench/bench_frontend.py [--runs 60] [--out bench/results/frontend.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from machine import load_now, machine

from soundscape.audio import Frontend, FrontendConfig

log = logging.getLogger("bench.frontend")


def onnx_frontend(cfg: FrontendConfig, threads: int):
    """An onnxruntime session computing the front end from ``(batch, window_samples)`` windows.

    Graph: reflect Pad -> STFT (onehot Hann window, one-sided) -> |X|^2 -> MatMul filter bank ->
    dB with per-item top_db -> per-item standardisation -> ``(batch, n_mels, frames)``.
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    fe = Frontend(cfg)
    pad = cfg.n_fft // 2
    fb = np.zeros((cfg.n_freqs, cfg.n_mels), np.float32)
    fb[: fe.max_bin] = fe.fb
    inits = [
        numpy_helper.from_array(np.array([0, pad, 0, pad], np.int64), "pads"),
        numpy_helper.from_array(np.array(cfg.hop_length, np.int64), "step"),
        numpy_helper.from_array(fe.window, "win"),
        numpy_helper.from_array(np.array([-1], np.int64), "last"),
        numpy_helper.from_array(fb, "fb"),
        numpy_helper.from_array(np.array(cfg.amin, np.float32), "amin"),
        numpy_helper.from_array(np.array(10.0 / math.log(10.0), np.float32), "db"),
        numpy_helper.from_array(np.array(cfg.top_db, np.float32), "top_db"),
        numpy_helper.from_array(np.array(cfg.norm_eps, np.float32), "eps"),
        numpy_helper.from_array(np.array([0, 2, 1], np.int64), "perm_unused"),
    ]
    n = helper.make_node
    nodes = [
        n("Pad", ["x", "pads"], ["xp"], mode="reflect"),
        n("Unsqueeze", ["xp", "last"], ["xs"]),
        n("STFT", ["xs", "step", "win"], ["spec"], onesided=1),  # (B, T, F, 2)
        n("Mul", ["spec", "spec"], ["sq"]),
        n("ReduceSum", ["sq", "last"], ["pow"], keepdims=0),  # (B, T, F)
        n("MatMul", ["pow", "fb"], ["mel"]),  # (B, T, M)
        n("Max", ["mel", "amin"], ["melc"]),
        n("Log", ["melc"], ["ln"]),
        n("Mul", ["ln", "db"], ["dbv"]),
        n("ReduceMax", ["dbv"], ["peak"], axes=[1, 2], keepdims=1),
        n("Sub", ["peak", "top_db"], ["floor"]),
        n("Max", ["dbv", "floor"], ["clip"]),
        n("ReduceMean", ["clip"], ["mean"], axes=[1, 2], keepdims=1),
        n("Sub", ["clip", "mean"], ["centred"]),
        n("Mul", ["centred", "centred"], ["c2"]),
        n("ReduceMean", ["c2"], ["var"], axes=[1, 2], keepdims=1),
        n("Sqrt", ["var"], ["std"]),
        n("Max", ["std", "eps"], ["stdc"]),
        n("Div", ["centred", "stdc"], ["norm"]),
        n("Transpose", ["norm"], ["images"], perm=[0, 2, 1]),
    ]
    graph = helper.make_graph(
        nodes, "frontend",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", cfg.window_samples])],
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", cfg.n_mels, cfg.n_frames])],
        initializer=inits[:-1],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda w: sess.run(None, {"x": w})[0]


def torch_frontend(cfg: FrontendConfig, threads: int):
    import torch

    from soundscape.audio.transforms import LogMelSpectrogram

    module = LogMelSpectrogram(cfg).eval()

    def run(w: np.ndarray) -> np.ndarray:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            return module(torch.from_numpy(w))[:, 0].numpy()

    return run


def measure(variants: dict[str, Callable[[np.ndarray], np.ndarray]], windows: np.ndarray,
            runs: int, rounds: int) -> dict[str, dict[str, float]]:
    times: dict[str, list[float]] = {k: [] for k in variants}
    per_round = math.ceil(runs / rounds)
    for _ in range(rounds):
        for name, fn in variants.items():
            for _ in range(3):  # warm-up: buffers, thread pools, caches
                fn(windows)
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn(windows)
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {k: {"median_ms": round(float(np.median(v)), 2), "p95_ms": round(float(np.percentile(v, 95)), 2),
                "min_ms": round(float(np.min(v)), 2), "runs": len(v)} for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=60, help="timed runs per variant (>= 50 for the record)")
    parser.add_argument("--rounds", type=int, default=3, help="repeat the sequence of variants")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "frontend.json"))
    parser.add_argument("--no-torch", action="store_true", help="skip torchaudio (not installed)")
    args = parser.parse_args()
    started = load_now()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    cfg = FrontendConfig()
    rng = np.random.default_rng(0)
    windows = (0.1 * rng.standard_normal((12, cfg.window_samples))).astype(np.float32)
    variants: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for threads in (1, 2):
        variants[f"numpy/scipy workers={threads}"] = Frontend(cfg, workers=threads)
        variants[f"onnx STFT threads={threads}"] = onnx_frontend(cfg, threads)
        if not args.no_torch:
            variants[f"torchaudio eager threads={threads}"] = torch_frontend(cfg, threads)
    reference = variants["numpy/scipy workers=1"](windows)
    assert reference.shape == (12, 128, 313)
    diffs = {k: float(np.abs(fn(windows) - reference).max()) for k, fn in variants.items()}
    results = measure(variants, windows, args.runs, args.rounds)
    log.info("| variant | median ms | p95 ms | max abs diff vs numpy |")
    log.info("| --- | ---: | ---: | ---: |")
    for k, r in results.items():
        r["max_abs_diff_vs_numpy"] = diffs[k]
        log.info("| %s | %.1f | %.1f | %.1e |", k, r["median_ms"], r["p95_ms"], diffs[k])
    payload = {
        "what": "one minute of audio: 12 x 5 s windows at 32 kHz -> (12, 128, 313) normalised log-mel",
        "machine": machine(started),
        "target_ms": 20.0,
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
