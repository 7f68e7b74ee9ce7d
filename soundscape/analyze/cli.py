"""``soundscape analyze INPUT... --out DIR``: resumable batch analysis (see ``soundscape analyze -h``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from model_store import DEFAULT_MODEL_NAME
from soundscape.options import MIN_HOP_S

from .settings import FORMATS

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)


def _split(values: list[str] | None) -> list[str] | None:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` so both ``--x a b`` and ``--x a,b`` work."""
    if values is None:
        return None
    return [v for item in values for v in item.split(",") if v]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``analyze`` options to ``parser``."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="Audio files, folders (walked recursively) or quoted glob patterns.")
    parser.add_argument("--out", required=True, help="Output folder (journal, outputs, summary).")
    model = parser.add_argument_group("model")
    model.add_argument("--store", default=None, help="Model store root (default: the user store when it has a "
                       "production model of --name, else the bundled store).")
    model.add_argument("--name", default=DEFAULT_MODEL_NAME, help="Model name in the store.")
    model.add_argument("--version", type=int, default=None, help="Model version (default: production).")
    model.add_argument("--model", dest="model_dir", default=None, metavar="VERSION_DIR",
                       help="A model folder (card.json + model.onnx or model.tflite, sha256-checked) instead of "
                            "the store.")
    res = parser.add_argument_group("results")
    res.add_argument("--hop-s", type=float, default=None,
                     help=f"Step between windows, >= {MIN_HOP_S:g} s (default: the card's; the service's hop_s).")
    res.add_argument("--threshold", type=float, default=None,
                     help="Report probabilities >= this in detections and JSON (default: 0.1; the service's "
                          "threshold).")
    res.add_argument("--min-conf", type=float, default=None, help="Deprecated name of --threshold.")
    res.add_argument("--species", nargs="+", default=None, metavar="NAME",
                     help="Only report these species: codes, common or scientific names (quote names with spaces; "
                          "the service's species).")
    res.add_argument("--species-list", default=None, metavar="FILE",
                     help="Only report the species in FILE: one code or name per line, # comments (as BirdNET's "
                          "--slist); joined to --species.")
    res.add_argument("--top-k", type=int, default=None, help="At most K species per window (the service's top_k).")
    res.add_argument("--format", dest="formats", nargs="+", default=["csv"], metavar="FMT",
                     help=f"Output formats, several at once: {', '.join(FORMATS)}.")
    res.add_argument("--combine", action="store_true",
                     help="Also write one table per format for the whole run: OUT/combined.detections.csv, "
                          ".detections.parquet, .selections.txt (Raven: one timeline, Begin Path + File Offset), "
                          ".kaleidoscope.csv (the BirdCLEF run table is always OUT/submission.csv).")
    res.add_argument("--embeddings", action="store_true", help="Also write per-window embeddings (Parquet).")
    run_ = parser.add_argument_group("execution")
    run_.add_argument("--engine", choices=["local", "ray"], default="local", help="Process pool or Ray Data.")
    run_.add_argument("--workers", type=int, default=None, help="Worker processes or Ray actors "
                                                                 "(default: the machine's cores).")
    run_.add_argument("--address", default=None, help="Ray cluster address, e.g. ray://head:10001 or auto "
                                                      "(default: start a local Ray).")
    run_.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: --workers).")
    run_.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                      help="Skip files the journal lists as finished.")
    run_.add_argument("--block-s", type=float, default=60.0, help="Longest block of decoded audio, in seconds.")
    run_.add_argument("--batch-size", type=int, default=32, help="Windows per model run.")
    run_.add_argument("--native-rate", action=argparse.BooleanOptionalAction, default=False,
                      help="A mel model computes its log-mel images at a file's own rate when its front end scales "
                           "to it exactly (e.g. 48 kHz for a 32 kHz model), skipping the resampler; off: always "
                           "resample to the model's rate.")
    run_.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")


def run(args: argparse.Namespace) -> int:
    """Run the analysis; prints the summary. Returns 0, 1 when some files failed, 2 on bad options."""
    from pydantic import ValidationError

    from model_store import StoreError

    from .runner import run_analysis
    from .settings import AnalyzeSettings

    threshold = args.threshold
    if args.min_conf is not None:
        print("soundscape analyze: --min-conf is deprecated, use --threshold (the same option, named as in the "
              "service)", file=sys.stderr)
        if threshold is not None and threshold != args.min_conf:
            print("soundscape analyze: invalid options: --min-conf and --threshold differ; give --threshold only",
                  file=sys.stderr)
            return 2
        threshold = args.min_conf
    fields = {k: v for k, v in {
        "inputs": args.inputs, "out": args.out, "store": args.store, "name": args.name, "version": args.version,
        "model_dir": args.model_dir, "hop_s": args.hop_s, "threshold": threshold,
        "species": _split(args.species), "species_list": args.species_list, "combine": args.combine or None,
        "top_k": args.top_k, "formats": _split(args.formats),
        "embeddings": args.embeddings, "engine": args.engine, "workers": args.workers, "address": args.address,
        "num_cpus": args.num_cpus, "resume": args.resume, "block_s": args.block_s, "batch_size": args.batch_size,
        "native_rate": args.native_rate,
    }.items() if v is not None}
    try:
        settings = AnalyzeSettings(**fields)
        summary = run_analysis(settings, progress=not args.no_progress)
    except ValidationError as exc:
        errors = "; ".join(f"--{'-'.join(str(p) for p in e['loc'][:1]).replace('_', '-')}: {e['msg']}"
                           for e in exc.errors())
        print(f"soundscape analyze: invalid options: {errors}", file=sys.stderr)
        return 2
    except (ValueError, StoreError) as exc:
        print(f"soundscape analyze: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"soundscape analyze: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 1 if summary["failures"] else 0
