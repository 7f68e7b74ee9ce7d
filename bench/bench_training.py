"""Training speed and memory on this machine: samples/s of the training loop and the process's peak RSS.

Each variant runs in its own process (a clean peak RSS, and allocator variables that only take effect at
start-up): the default recipe of ``soundscape build-default-model`` (``tf_efficientnet_lite0`` from its
ImageNet weights, 128 x 313 log-mel, batch 32, full field augmentation with beds from the unlabelled
recordings) on the ``field`` demo data (``small``), one epoch of ``--steps`` batches and its validation on
the pseudo-soundscapes. ``samples/s`` is the loop's own figure (``metrics.csv``: augmentation, front end and
optimiser steps from the epoch's start; validation not included). Peak RSS is the process's ``VmHWM`` at the
end, data preparation and validation included.

Variants (``--variants``): ``float32`` (no autocast, contiguous, no prefetch), ``bf16_cl`` (bfloat16 autocast
and channels-last, no prefetch), ``default`` (today's defaults: on a CPU that is ``bf16_cl`` with passes of 8),
``prefetch`` (``default`` with the prefetch thread, the CPU default until stop 22), ``malloc_env`` (``default``
with ``MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TRIM_THRESHOLD_=134217728``, the glibc settings this project used to
recommend), ``arena2`` (``default`` with ``MALLOC_ARENA_MAX=2``), ``hugetlb`` (glibc transparent huge pages,
1 MiB mmap threshold), ``whole_batch`` / ``micro16`` (``default`` with the batch of 32 through the model in one
pass / in passes of 16 instead of the CPU default's 8, ``micro_batch``). Self-training is off (one round), so the
figures are a round's; the other variables of the environment are passed on, ``MALLOC_*`` ones only as the variant
says (training itself caps glibc's arenas at one unless ``MALLOC_ARENA_MAX`` is set).

Usage::

    .venv/bin/python bench/bench_training.py --work-dir /tmp/bt [--steps 16] [--variants default float32]
        [--out bench/results/training.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import load_now, machine

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.training")

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "134217728"}
HUGETLB_ENV = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=1048576"}
VARIANTS: dict[str, dict] = {
    "float32": {"config": {"amp": False, "channels_last": False, "prefetch": False}, "env": {}},
    "bf16_cl": {"config": {"prefetch": False}, "env": {}},
    "default": {"config": {}, "env": {}},
    "malloc_env": {"config": {}, "env": MALLOC_ENV},
    "arena2": {"config": {}, "env": {"MALLOC_ARENA_MAX": "2"}},
    "hugetlb": {"config": {}, "env": HUGETLB_ENV},
    "whole_batch": {"config": {"micro_batch": 0}, "env": {}},
    "prefetch": {"config": {"prefetch": True}, "env": {}},
    "micro16": {"config": {"micro_batch": 16}, "env": {}},
}


def child(spec: dict) -> dict:
    """One variant in this process: train one epoch, return its samples/s, time and peak RSS."""
    sys.path.insert(0, str(ROOT))
    from training import TrainConfig, train

    data, work = Path(spec["data"]), Path(spec["work"])
    cfg = TrainConfig(
        metadata=data / "train_metadata.csv", audio_root=data / "train_audio", taxonomy=data / "taxonomy.csv",
        backgrounds_dir=data / "backgrounds", unlabelled_dir=data / "unlabelled", out_dir=work / spec["name"],
        cache_dir=work / "cache", arch="tf_efficientnet_lite0", pretrained=True, batch_size=spec["batch_size"],
        epochs=1, epoch_samples=spec["batch_size"] * spec["steps"], seed=0, self_training={"rounds": 0},
        **spec["config"])
    started = time.perf_counter()
    result = train(cfg)
    row = result.history[-1]
    with open(result.run_dir / "metrics.csv") as f:
        logged = next(csv.DictReader(f))
    return {"samples_per_s": round(float(logged["samples_per_s"]), 2), "samples": int(row["samples"]),
            "epoch_s": round(float(row["epoch_s"]), 1), "wall_s": round(time.perf_counter() - started, 1),
            "peak_rss_mb": round(_vm_hwm_mb(), 1), "train_loss": round(float(row["train_loss"]), 6)}


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_variant(name: str, args: argparse.Namespace, data: Path) -> dict:
    variant = VARIANTS[name]
    spec = {"name": name, "data": str(data), "work": str(args.work_dir), "steps": args.steps,
            "batch_size": args.batch_size, "config": variant["config"]}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))} | variant["env"]
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"variant {name} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    log.info("%s: %.2f samples/s, peak RSS %.0f MB", name, out["samples_per_s"], out["peak_rss_mb"])
    return {**out, "config": variant["config"], "env": variant["env"]}


def _median_of(name: str, runs: list[dict]) -> dict:
    """A variant's median samples/s and peak RSS over the rounds, with every run kept."""
    med = {key: statistics.median(r[key] for r in runs) for key in ("samples_per_s", "peak_rss_mb", "epoch_s")}
    log.info("%s, median of %d: %.2f samples/s, peak RSS %.0f MB", name, len(runs), med["samples_per_s"],
             med["peak_rss_mb"])
    return {**med, "config": runs[0]["config"], "env": runs[0]["env"],
            "runs": [{k: v for k, v in r.items() if k not in ("config", "env")} for r in runs]}


def demo_data(work: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from soundscape.demo import generate_dataset

    return generate_dataset(work / "data", seed=0, size="small", profile="field")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path("build/bench-training"),
                        help="Demo data, decode cache and runs go here.")
    parser.add_argument("--data", type=Path, default=None,
                        help="The field demo data (default: generated into --work-dir, 'small', seed 0).")
    parser.add_argument("--steps", type=int, default=16, help="Optimiser steps measured per variant.")
    parser.add_argument("--batch-size", type=int, default=32, help="Batch size.")
    parser.add_argument("--variants", nargs="+", default=["float32", "bf16_cl", "default", "malloc_env"],
                        choices=list(VARIANTS),
                        help="Variants to run, in this order.")
    parser.add_argument("--repeat", type=int, default=1,
                        help="Rounds over the variants (interleaved); each variant's figures are its medians.")
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = load_now()
    data = args.data or demo_data(args.work_dir)
    rounds = [{name: run_variant(name, args, data) for name in args.variants} for _ in range(args.repeat)]
    results = {name: _median_of(name, [r[name] for r in rounds]) for name in args.variants}
    report = {"machine": machine(started), "command": "python " + " ".join(sys.argv),
              "workload": {"arch": "tf_efficientnet_lite0", "image": [128, 313], "batch_size": args.batch_size,
                           "steps": args.steps, "repeat": args.repeat, "data": "field demo, small, seed 0"},
              "variants": results}
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
