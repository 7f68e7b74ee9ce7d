"""Batch-analysis throughput: local process pool vs Ray Data, 1 and 2 workers, on 100 one-minute files.

Model: the store's production ``birds`` model when it is a ``tf_efficientnet_lite0``; otherwise a
``tf_efficientnet_lite0`` with random weights (same compute) exported with ``training.export`` into a temp
store. Data: the demo generator's ``bench`` soundscapes (60 s OGG each). Each configuration analyses
every file from scratch (``resume=False``, fresh output folder), ``--repeats`` times; the median is
reported. Ray runs on a local Ray started once (its start-up time is reported separately), so its rows
are comparable with the local pool, whose start-up is included (it is under a second).

    .venv/bin/python bench/bench_analyze.py                 # writes bench/results/analyze.json
    .venv/bin/python bench/bench_analyze.py --repeats 3 --files 100
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import load_now, machine

from model_store import DEFAULT_MODEL_NAME, Label, ModelCard, ModelStore, StoreError, TensorSpec, default_store_path
from soundscape.analyze import AnalyzeSettings, run_analysis
from soundscape.audio import FrontendConfig

log = logging.getLogger("bench_analyze")
ARCH = "tf_efficientnet_lite0"


def bench_store(tmp: Path) -> tuple[Path, str]:
    """A store holding a ``tf_efficientnet_lite0`` birds model: the bundled one, or a random-weight export."""
    try:
        card = ModelStore(default_store_path()).card(DEFAULT_MODEL_NAME)
        if card.architecture == ARCH:
            return default_store_path(), f"bundled {card.name} v{card.version}"
    except StoreError:
        pass
    import timm
    import torch

    from training.export import ExportConfig, export_onnx

    torch.manual_seed(0)
    codes = [f"sp{i:02d}" for i in range(20)]
    fe = FrontendConfig()
    model = timm.create_model(ARCH, pretrained=False, in_chans=1, num_classes=len(codes))
    images = np.random.default_rng(0).normal(size=(4, *fe.image_shape)).astype(np.float32)
    res = export_onnx(model, tmp / "model.onnx", images, ExportConfig(exporter="torchscript"))
    card = ModelCard(name=DEFAULT_MODEL_NAME, labels=[Label(code=c) for c in codes], frontend=fe, architecture=ARCH,
                     inputs=[TensorSpec(name="image", shape=[None, *fe.image_shape])],
                     outputs=[TensorSpec(name="logits", shape=[None, len(codes)]),
                              TensorSpec(name="embedding", shape=[None, res.embedding_dim])],
                     notes="random weights, for benchmarks only")
    ModelStore(tmp / "store").register(card, res.path, promote=True)
    return tmp / "store", f"{ARCH} random weights (exported with {res.exporter})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/tmp/soundscape-bench-data", help="Demo dataset folder (made if missing).")
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--engines", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "analyze.json"))
    args = parser.parse_args()
    started = load_now()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("soundscape").setLevel(logging.WARNING)

    data = Path(args.data)
    if not (data / "soundscapes").is_dir() or len(list((data / "soundscapes").glob("*.ogg"))) < args.files:
        from soundscape.demo import generate_dataset

        generate_dataset(data, seed=0, size="bench")
    files = sorted((data / "soundscapes").glob("*.ogg"))[: args.files]
    tmp = Path(tempfile.mkdtemp(prefix="bench-analyze-"))
    store, model_desc = bench_store(tmp)
    log.info("model: %s; %d files", model_desc, len(files))

    ray_start_s = None
    rows = []
    for engine in args.engines:
        if engine == "ray":
            import ray

            t0 = time.perf_counter()
            ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False)
            ray_start_s = time.perf_counter() - t0
        for workers in args.workers:
            walls, audio_min = [], 0.0
            for r in range(args.repeats):
                out = tmp / f"out-{engine}-{workers}-{r}"
                s = AnalyzeSettings(inputs=[str(f) for f in files], out=out, store=store, workers=workers,
                                    engine=engine, formats=["csv", "birdclef"], resume=False)
                summary = run_analysis(s, progress=False)
                assert summary["files"]["done"] == len(files), summary
                walls.append(summary["wall_s"])
                audio_min = summary["audio_hours_this_run"] * 60
                log.info("%s workers=%d run %d: %.2f s, %.1f audio-min/s", engine, workers, r, walls[-1],
                         audio_min / walls[-1])
            wall = statistics.median(walls)
            rows.append({"engine": engine, "workers": workers, "files": len(files), "audio_min": round(audio_min, 2),
                         "wall_s_runs": walls, "wall_s_median": round(wall, 3),
                         "audio_min_per_s": round(audio_min / wall, 2)})
        if engine == "ray":
            ray.shutdown()
    result = {
        "benchmark": "batch analysis throughput (soundscape analyze), fresh outputs per run",
        "command": "python bench/bench_analyze.py " + " ".join(
            f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()
            if k not in ("out", "data")),
        "model": model_desc,
        "machine": machine(started),
        "formats": ["csv", "birdclef"],
        "ray_start_s": round(ray_start_s, 2) if ray_start_s is not None else None,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
