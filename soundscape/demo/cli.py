"""``soundscape demo-data OUT``: generate the synthetic demo bird-sound dataset."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)

_SIZES = ("tiny", "small", "bench")  # kept literal so --help does not import numpy
_PROFILES = ("clean", "field")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``demo-data`` verb."""
    parser.description = (
        "Generate the synthetic demo bird-sound dataset (BirdCLEF layout): focal clips of 14 species\n"
        "in train_audio/ with train_metadata.csv and taxonomy.csv, labelled 60 s soundscapes with\n"
        "soundscape_labels.csv, call-free noise in backgrounds/, and dataset.json (written last).\n"
        "The same seed gives byte-identical files. Focal clips are clean recordings in both profiles.\n\n"
        "profiles:\n"
        "  clean = easy soundscapes: isolated calls at -3..+20 dB over the background, no distance, no\n"
        "          reverb, species prior ~ sqrt(clips), 2 unknown species, 2-3 nocall windows a minute\n"
        "  field = what the field sounds like: 4-20 s bouts of repeated song at -6..+12 dB SNR (1-11 kHz,\n"
        "          over the phrases, against the noise bed) heard 10-300 m away (low-pass tightening with\n"
        "          distance, reverb of the site: RT60 0.3-1.2 s, DRR falling with distance), flat species\n"
        "          prior ~ clips**0.2 with every species in some labelled soundscape, <= 4 species per\n"
        "          5 s window, >= 25 % nocall windows, 3 unknown species (one a sound-alike), 3 one-clip\n"
        "          species, similar pairs 6-7 % apart, and unlabelled/ soundscapes of the same sites\n\n"
        "sizes:          clean                       field\n"
        "  tiny  = 50 clips + 3 soundscapes      42 clips + 3 soundscapes + 4 unlabelled (tests; seconds)\n"
        "  small = 403 clips + 16 soundscapes    299 clips + 16 soundscapes + 40 unlabelled (default model)\n"
        "  bench = small + 100 more soundscapes  small + 100 more labelled soundscapes (benchmarks)"
    )
    parser.add_argument("out", type=Path, metavar="OUT", help="Destination folder (must be empty or missing).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (non-negative).")
    parser.add_argument("--size", choices=_SIZES, default="tiny", help="How much data to generate.")
    parser.add_argument("--profile", choices=_PROFILES, default="clean",
                        help="How hard the soundscapes are: clean (easy) or field (realistic).")
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
    generate_dataset(out, seed=args.seed, size=args.size, profile=args.profile)
    manifest = json.loads((out / "dataset.json").read_text())
    counts = manifest["counts"]
    total_mb = sum((out / rel).stat().st_size for rel in manifest["files"]) / 1e6
    unlabelled = f", {counts['unlabelled']} unlabelled" if "unlabelled" in counts else ""
    print(f"demo data ({args.profile}, {args.size}, seed {args.seed}) in {out}: {counts['species']} species, "
          f"{counts['train_clips']} clips, {counts['soundscapes']} soundscapes "
          f"({counts['windows']} windows, {counts['nocall_windows']} nocall){unlabelled}, "
          f"{counts['backgrounds']} backgrounds, {total_mb:.1f} MB in {time.perf_counter() - start:.1f} s")
    return 0
