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

from model_store import DEFAULT_MODEL_NAME, default_store_path

log = logging.getLogger(__name__)

# BirdCLEF layout under --data
LAYOUT = {"metadata": "train_metadata.csv", "audio_root": "train_audio", "taxonomy": "taxonomy.csv",
          "soundscapes_labels": "soundscape_labels.csv", "soundscapes_dir": "soundscapes",
          "backgrounds_dir": "backgrounds"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data (BirdCLEF layout under --data, or each path on its own)")
    data.add_argument("--data", type=Path, default=None,
                      help="Folder with train_metadata.csv, train_audio/, soundscape_labels.csv, soundscapes/, "
                           "optional taxonomy.csv and backgrounds/.")
    for field, default in LAYOUT.items():
        data.add_argument(f"--{field.replace('_', '-')}", type=Path, default=None, help=f"(Default: DATA/{default})")
    parser.add_argument("--out-dir", type=Path, required=True, help="Run directory of the challenger.")
    parser.add_argument("--config", type=Path, default=None,
                        help="JSON file of TrainConfig fields (recipe, epochs...); flags below override it.")
    parser.add_argument("--arch", default=None, help="Architecture (default: TrainConfig's).")
    parser.add_argument("--checkpoint", type=Path, default=None, help="timm-compatible weights to start from.")
    parser.add_argument("--epochs", type=int, default=None, help="Epochs (default: TrainConfig's).")
    parser.add_argument("--batch-size", type=int, default=None, help="Batch size.")
    parser.add_argument("--max-steps-per-epoch", type=int, default=None, help="Cap on steps per epoch.")
    parser.add_argument("--seed", type=int, default=None, help="Random seed.")
    parser.add_argument("--store", type=Path, default=default_store_path(), help="Model store root.")
    parser.add_argument("--name", default=DEFAULT_MODEL_NAME, help="Model name in the store.")
    parser.add_argument("--metric", choices=["macro_roc_auc", "padded_cmap"], default="macro_roc_auc",
                        help="Decision metric, scored on the validation soundscapes.")
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
    for field, default in LAYOUT.items():
        value = getattr(args, field)
        if value is None and args.data is not None and (args.data / default).exists():
            value = args.data / default
        if value is not None:
            fields[field] = value
    for field in ("arch", "checkpoint", "epochs", "batch_size", "max_steps_per_epoch", "seed"):
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
