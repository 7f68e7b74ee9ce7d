"""``soundscape retrain``: train a challenger, compare it with production, promote it only if better.

Exit codes: ``0`` challenger promoted (or first model), ``10`` champion kept (the challenger is registered
but not promoted), ``2`` bad input, ``1`` failure. Reports: ``retrain_report.json`` and ``.md`` in the run
directory (``--out-dir``) or ``--report-dir``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from model_store import DEFAULT_MODEL_NAME, add_write_store_argument

log = logging.getLogger(__name__)

# BirdCLEF layout under --data: TrainConfig field -> (flag, name under --data)
LAYOUT = {"metadata": ("--metadata", "train_metadata.csv"), "audio_root": ("--audio-root", "train_audio"),
          "taxonomy": ("--taxonomy", "taxonomy.csv"),
          "soundscapes_labels": ("--soundscapes-labels", "soundscape_labels.csv"),
          "soundscapes_dir": ("--soundscapes-dir", "soundscapes"),
          "backgrounds_dir": ("--backgrounds-dir", "backgrounds"),
          "unlabelled_dir": ("--unlabelled", "unlabelled")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from typing import get_args

    from training.config import add_micro_batch_argument
    from training.metrics import Metric

    data = parser.add_argument_group("data (BirdCLEF layout under --data, or each path on its own)")
    data.add_argument("--data", type=Path, default=None,
                      help="Folder with train_metadata.csv and train_audio/; optional taxonomy.csv, backgrounds/, "
                           "unlabelled/ (the site's unlabelled recordings), soundscape_labels.csv + soundscapes/.")
    for field, (flag, default) in LAYOUT.items():
        data.add_argument(flag, dest=field, type=Path, default=None, help=f"(Default: DATA/{default} if present)")
    parser.add_argument("--out-dir", type=Path, required=True, help="Run directory of the challenger.")
    parser.add_argument("--config", type=Path, default=None,
                        help="JSON file of TrainConfig fields (recipe, epochs...); flags below override it.")
    parser.add_argument("--arch", default=None, help="Architecture (default: TrainConfig's).")
    parser.add_argument("--checkpoint", type=Path, default=None, help="timm-compatible weights to start from.")
    parser.add_argument("--epochs", type=int, default=None, help="Epochs (default: TrainConfig's).")
    parser.add_argument("--batch-size", type=int, default=None, help="Batch size.")
    add_micro_batch_argument(parser)
    parser.add_argument("--max-steps-per-epoch", type=int, default=None, help="Cap on steps per epoch.")
    parser.add_argument("--seed", type=int, default=None, help="Random seed.")
    add_write_store_argument(parser)
    parser.add_argument("--name", default=DEFAULT_MODEL_NAME, help="Model name in the store.")
    parser.add_argument("--metric", choices=list(get_args(Metric)), default="padded_cmap",
                        help="Decision metric, scored on the labelled soundscapes when given, else on one "
                             "pseudo-soundscape set (held-out clips in field-like beds) scored by both models.")
    parser.add_argument("--margin", type=float, default=0.005,
                        help="Promote only if challenger >= champion + margin.")
    parser.add_argument("--quantize", choices=["int8"], default=None, help="Try int8 for the challenger.")
    parser.add_argument("--tolerance", type=float, default=0.01, help="Largest metric drop accepted for int8.")
    parser.add_argument("--report-dir", type=Path, default=None, help="Report folder (default: --out-dir).")


def train_fields(args: argparse.Namespace) -> dict:
    """TrainConfig fields from ``--config``, ``--data`` and the flags (flags win)."""
    fields: dict = {}
    if args.config is not None:
        try:
            fields.update(json.loads(Path(args.config).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{args.config}: cannot read the JSON config ({exc})") from None
    for field, (_, default) in LAYOUT.items():
        value = getattr(args, field)
        if value is None and args.data is not None and (args.data / default).exists():
            value = args.data / default
        if value is not None:
            fields[field] = value
    for field in ("arch", "checkpoint", "epochs", "batch_size", "micro_batch", "max_steps_per_epoch", "seed"):
        if getattr(args, field) is not None:
            fields[field] = getattr(args, field)
    fields["out_dir"] = args.out_dir
    return fields


def run(args: argparse.Namespace) -> int:
    from training.retrain import RetrainConfig, RetrainExit, retrain

    try:
        cfg = RetrainConfig(train=train_fields(args), store=args.store, name=args.name, metric=args.metric,
                            margin=args.margin, quantize=args.quantize == "int8", quantize_tolerance=args.tolerance,
                            report_dir=args.report_dir)
    except ValueError as exc:
        log.error("%s", exc)
        return int(RetrainExit.BAD_INPUT)
    report = retrain(cfg)
    print(json.dumps({k: getattr(report, k) for k in (
        "decision", "exit_code", "reason", "champion_version", "challenger_version", "production_version",
        "champion_metrics", "challenger_metrics")}, indent=2))
    return report.exit_code
