"""``soundscape demo-data OUT``: generate the synthetic demo bird-sound dataset."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)

_SIZES = ("tiny", "small", "bench")  # kept literal so --help does not import numpy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``demo-data`` verb."""
    parser.description = (
        "Generate the synthetic demo bird-sound dataset (BirdCLEF layout): focal clips of 14 species\n"
        "in train_audio/ with train_metadata.csv and taxonomy.csv, labelled 60 s soundscapes with\n"
        "soundscape_labels.csv, call-free noise in backgrounds/, and dataset.json (written last).\n"
        "The same seed gives byte-identical files.\n\n"
        "sizes: tiny  = 50 clips + 3 soundscapes (tests; seconds)\n"
        "       small = 403 clips + 16 soundscapes (the bundled default model)\n"
        "       bench = small + 100 more one-minute soundscapes (benchmarks)"
    )
    parser.add_argument("out", type=Path, metavar="OUT", help="Destination folder (must be empty or missing).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (non-negative).")
    parser.add_argument("--size", choices=_SIZES, default="tiny", help="How much data to generate.")
    parser.add_argument("--force", action="store_true",
                        help="Write into a non-empty OUT, replacing the dataset's own files and folders there.")


def run(args: argparse.Namespace) -> int:
    """Generate the dataset and print a short summary; returns the exit status."""
    import json
    import time

    from .dataset import generate_dataset

    out: Path = args.out
    if out.exists() and not out.is_dir():
        log.error("OUT %s exists and is not a folder", out)
        return 2
    if out.is_dir() and any(out.iterdir()) and not args.force:
        log.error("OUT %s is not empty; choose an empty folder or pass --force to overwrite", out)
        return 2
    if args.seed < 0:
        log.error("--seed must be non-negative, got %d", args.seed)
        return 2
    start = time.perf_counter()
    generate_dataset(out, seed=args.seed, size=args.size)
    manifest = json.loads((out / "dataset.json").read_text())
    counts = manifest["counts"]
    total_mb = sum((out / rel).stat().st_size for rel in manifest["files"]) / 1e6
    print(f"demo data ({args.size}, seed {args.seed}) in {out}: {counts['species']} species, "
          f"{counts['train_clips']} clips, {counts['soundscapes']} soundscapes "
          f"({counts['windows']} windows, {counts['nocall_windows']} nocall), {counts['backgrounds']} "
          f"backgrounds, {total_mb:.1f} MB in {time.perf_counter() - start:.1f} s")
    return 0
