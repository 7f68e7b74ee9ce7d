"""``soundscape train``: fine-tune a timm model on labelled clips (BirdCLEF layout, one folder per species or Raven
selection tables: :mod:`training.inputs`), or (``--backbone``) train a head on a frozen model's embeddings of them
(:mod:`training.embedding_head`).

Settings come from ``--config config.json`` (a :class:`~training.config.TrainConfig` as JSON) and/or the
flags; a flag given on the command line overrides the file. Every field of
:class:`~training.config.AugmentConfig` has a flag ``--aug-<field>`` (underscores as dashes) generated from
the model itself, with its description and default in ``--help``: a new knob gets its flag without
touching this file. ``--print-config`` prints the resolved config as JSON and exits. Runs unchanged under
``torchrun --nproc_per_node=N -m soundscape.cli train ...`` (DistributedDataParallel).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

__all__ = ["add_arguments", "build_config", "run"]

log = logging.getLogger("soundscape.train")

# flag dest -> TrainConfig field
_FIELDS = {
    "metadata": "metadata", "audio_root": "audio_root", "species_dirs": "species_dirs",
    "soundscapes_labels": "soundscapes_labels", "soundscapes_dir": "soundscapes_dir", "backgrounds": "backgrounds_dir",
    "taxonomy": "taxonomy",
    "out": "out_dir", "cache_dir": "cache_dir", "arch": "arch", "pretrained": "pretrained",
    "checkpoint": "checkpoint", "epochs": "epochs", "batch_size": "batch_size", "micro_batch": "micro_batch",
    "lr": "lr",
    "weight_decay": "weight_decay", "warmup_epochs": "warmup_epochs", "loss": "loss",
    "secondary_weight": "secondary_weight", "sampling_alpha": "sampling_alpha", "seed": "seed",
    "val_fraction": "val_fraction", "patience": "early_stopping_patience", "num_workers": "num_workers",
    "max_steps_per_epoch": "max_steps_per_epoch", "resume": "resume", "drop_rate": "drop_rate",
    "drop_path_rate": "drop_path_rate", "monitor": "monitor", "unlabelled": "unlabelled_dir",
    "validation": "validation", "call_crop_p": "call_crop_p", "amp": "amp",
    "channels_last": "channels_last", "prefetch": "prefetch", "backbone": "backbone",
    "backbone_store": "backbone_store", "head": "head",
}

# flag dest -> RavenConfig field (TrainConfig.raven)
_RAVEN = {"raven_tables": "tables", "raven_audio": "audio_dir", "raven_species_column": "species_column",
          "raven_negatives": "negatives_per_recording"}

AUG_PREFIX = "aug_"  # flag dest of AugmentConfig field <name>: aug_<name>; the flag: --aug-<name with dashes>


def _flag_for(annotation: Any) -> dict[str, Any]:
    """argparse keywords that parse a value of a field's type (JSON text for types it does not know)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if annotation in (int, float, str):
        return {"type": annotation, "metavar": {int: "N", float: "X", str: "TEXT"}[annotation]}
    if origin is Literal:
        return {"type": type(args[0]), "choices": list(args)}
    if origin is tuple and args and Ellipsis not in args and all(a in (int, float) for a in args):
        return {"type": args[0], "nargs": len(args), "metavar": ("LOW", "HIGH") if len(args) == 2 else None}
    if origin in (list, tuple) and args:
        item = _flag_for(args[0])
        if "type" in item and "nargs" not in item:
            return {**item, "nargs": "+"}
    return {"type": json.loads, "metavar": "JSON"}


def _shown(value: Any) -> str:
    """A default as it is typed on the command line (ranges and lists: space-separated)."""
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def _add_augment_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per AugmentConfig field, with its description and default."""
    from .config import AugmentConfig

    group = parser.add_argument_group(
        "augmentation", "Every AugmentConfig field; a *_p probability of 0 switches its step off.\nThese flags "
        "override the config file's 'augment' values, and apply after --no-augment.")
    for name, field in AugmentConfig.model_fields.items():
        default = _shown(field.get_default(call_default_factory=True))
        text = f"{field.description or ''} (default: {default})".strip().replace("%", "%%")
        group.add_argument(f"--aug-{name.replace('_', '-')}", dest=f"{AUG_PREFIX}{name}", default=argparse.SUPPRESS,
                           help=text, **_flag_for(field.annotation))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``soundscape train`` (all optional when ``--config`` provides them)."""
    from .config import VALIDATION_SETS, add_micro_batch_argument
    from .metrics import Metric

    data = parser.add_argument_group("data")
    data.add_argument("--config", type=Path, help="TrainConfig as JSON; flags override its values.")
    data.add_argument("--metadata", type=Path, help="train_metadata.csv.")
    data.add_argument("--audio-root", type=Path, help="Folder the metadata's filenames are relative to.")
    data.add_argument("--species-dirs", type=Path, metavar="DIR",
                      help="Train on one folder per species instead: DIR/<species code>/*.wav (any audio format).")
    data.add_argument("--raven-tables", type=Path, metavar="PATH",
                      help="Train on Raven selection tables instead: each box a labelled crop, the rest of each "
                           "recording negative windows. A Raven selection table (tab-separated .txt, or .csv) or a "
                           "folder of them.")
    data.add_argument("--raven-audio", type=Path, metavar="DIR")
    data.add_argument("--raven-species-column", metavar="NAME")
    data.add_argument("--raven-negatives", type=int, metavar="N")
    data.add_argument("--soundscapes-labels", type=Path, help="soundscape_labels.csv (validation).")
    data.add_argument("--soundscapes-dir", type=Path, help="Folder of the labelled soundscape recordings.")
    data.add_argument("--backgrounds", type=Path, help="Folder of background recordings to mix in.")
    data.add_argument("--unlabelled", type=Path,
                      help="Folder of the site's unlabelled recordings (beds of the pseudo-soundscape validation).")
    data.add_argument("--taxonomy", type=Path, help="Species names: eBird taxonomy (SPECIES_CODE, PRIMARY_COM_NAME, "
                      "SCI_NAME), BirdCLEF taxonomy.csv (primary_label, ...) or species_code, common_name.")
    data.add_argument("--out", type=Path, help="Run directory (checkpoints, metrics.csv, curves.png).")
    data.add_argument("--cache-dir", type=Path, help="Decoded-audio cache (None: next to the run).")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", help="Architecture (any timm name).")
    model.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                       help="Start from local ImageNet weights.")
    model.add_argument("--checkpoint", type=Path, help="timm-compatible weights to start from.")
    model.add_argument("--backbone", metavar="VERSION|FILE",
                       help="Train a multi-label head on this model's frozen embeddings (name[:version] in "
                            "--backbone-store, or a version folder / card.json) instead of fine-tuning --arch; "
                            "then the defaults of --epochs, --lr and --patience are 40, 3e-3 and 10.")
    model.add_argument("--backbone-store", type=Path, help="Store that --backbone names are looked up in.")
    model.add_argument("--head", choices=["linear", "mlp"], help="Head trained on the backbone's embeddings.")
    model.add_argument("--drop-rate", type=float)
    model.add_argument("--drop-path-rate", type=float)
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int)
    opt.add_argument("--batch-size", type=int)
    add_micro_batch_argument(opt)
    opt.add_argument("--lr", type=float)
    opt.add_argument("--weight-decay", type=float)
    opt.add_argument("--warmup-epochs", type=float)
    opt.add_argument("--loss", choices=["bce", "focal"])
    opt.add_argument("--secondary-weight", type=float, help="Target value of secondary labels.")
    opt.add_argument("--sampling-alpha", type=float, help="Sampling weight ~ count^-alpha (0 = uniform).")
    opt.add_argument("--no-augment", action="store_true", help="Switch every augmentation off.")
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--seed", type=int)
    run_group.add_argument("--val-fraction", type=float, help="Share of each species' clips held out.")
    run_group.add_argument("--validation", choices=list(VALIDATION_SETS),
                           help="Validation set that drives early stopping and checkpoint selection "
                                "(every available set is logged each epoch).")
    run_group.add_argument("--monitor", choices=list(get_args(Metric)), help="Early-stopping metric.")
    run_group.add_argument("--patience", type=int, help="Early-stopping patience in epochs.")
    run_group.add_argument("--num-workers", type=int, help="DataLoader worker processes.")
    run_group.add_argument("--max-steps-per-epoch", type=int)
    run_group.add_argument("--resume", action="store_true", default=None, help="Continue from <out>/last.pt.")
    run_group.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                           help="Mixed precision (float16 on CUDA, bfloat16 on CPUs that have it).")
    run_group.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                           help="Channels-last memory format for the model.")
    run_group.add_argument("--prefetch", action=argparse.BooleanOptionalAction, default=None,
                           help="Prepare the next batch in a background thread while the model steps. "
                                "(Default: on GPUs only)")
    run_group.add_argument("--call-crop-p", type=float,
                           help="Share of random training crops of long clips cut where the clip calls.")
    run_group.add_argument("--print-config", action="store_true",
                           help="Print the fully resolved TrainConfig (--config, then the flags) as JSON to stdout "
                                "and exit without training.")
    _add_augment_arguments(parser)
    _document_defaults(parser)


def _document_defaults(parser: argparse.ArgumentParser) -> None:
    """Show each flag's TrainConfig description and default in ``--help``.

    The flags' own default is "not given" (so ``--config`` values are not overridden); the effective
    default is TrainConfig's, which is what a user needs to see.
    """
    from pydantic_core import PydanticUndefined

    from .config import RavenConfig, TrainConfig

    for action in parser._actions:
        name, fields = _FIELDS.get(action.dest), TrainConfig.model_fields
        if action.dest in _RAVEN:
            name, fields = _RAVEN[action.dest], RavenConfig.model_fields
        if name is None or name not in fields:
            continue
        field = fields[name]
        default = field.get_default(call_default_factory=True)
        shown = "required" if default is PydanticUndefined else default
        text = action.help or field.description or ""
        given_with_raven = default is PydanticUndefined and action.dest in _RAVEN  # the Raven input itself
        action.help = text if given_with_raven else f"{text} (default: {shown})".strip()
        action.default = argparse.SUPPRESS  # absent from args unless given; build_config uses getattr


def build_config(args: argparse.Namespace):
    """The :class:`TrainConfig` of the parsed flags (``--config`` first, flags on top).

    Raises:
        FileNotFoundError: ``--config`` does not exist.
        ValueError: invalid JSON or settings (pydantic's message names the field).
    """
    from .config import AugmentConfig, TrainConfig

    values: dict = {}
    if args.config is not None:
        if not args.config.is_file():
            raise FileNotFoundError(f"config file not found: {args.config}")
        try:
            values = json.loads(args.config.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{args.config}: not valid JSON ({exc})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{args.config}: expected a JSON object of TrainConfig fields")
    for dest, name in _FIELDS.items():
        value = getattr(args, dest, None)
        if value is not None:
            values[name] = value
    raven = {name: getattr(args, dest) for dest, name in _RAVEN.items() if getattr(args, dest, None) is not None}
    if raven:
        values["raven"] = {**(values.get("raven") or {}), **raven}
    if getattr(args, "no_augment", False):
        values["augment"] = AugmentConfig.off().model_dump()
    flags = {name: getattr(args, f"{AUG_PREFIX}{name}") for name in AugmentConfig.model_fields
             if hasattr(args, f"{AUG_PREFIX}{name}")}
    if flags:
        base = values.get("augment") or {}
        if not isinstance(base, dict):
            raise ValueError(f"'augment' must be a JSON object of AugmentConfig fields, not {base!r}")
        values["augment"] = {**base, **flags}
    if "out_dir" not in values:
        raise ValueError("missing required setting ['--out'] (give the flag or --config)")
    if not any(values.get(name) for name in ("metadata", "species_dirs", "raven")):
        raise ValueError("missing the training input: --metadata with --audio-root, --species-dirs or --raven-tables "
                         "(or --config)")
    for name in ("metadata", "taxonomy", "soundscapes_labels"):
        if values.get(name) is not None and not Path(values[name]).is_file():
            raise FileNotFoundError(f"{name.replace('_', '-')} file not found: {values[name]}")
    for name in ("audio_root", "species_dirs", "soundscapes_dir", "backgrounds_dir", "unlabelled_dir",
                 "backbone_store"):
        if values.get(name) is not None and not Path(values[name]).is_dir():
            raise FileNotFoundError(f"{name.replace('_', '-')} folder not found: {values[name]}")
    return TrainConfig.model_validate(values)


def run(args: argparse.Namespace) -> int:
    """Train; exit 0 on success, 2 on bad settings or data (a one-line message, no traceback)."""
    from pydantic import ValidationError

    try:
        cfg = build_config(args)
    except ValidationError as exc:
        log.error("invalid training settings: %s", exc)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    if getattr(args, "print_config", False):
        sys.stdout.write(cfg.model_dump_json(indent=2) + "\n")
        return 0
    from .train import train

    try:
        result = train(cfg)
    except (FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per process
        log.info("done: best checkpoint %s, metrics %s", result.best_checkpoint,
                 {k: round(v, 4) for k, v in result.metrics.items()})
    return 0
