"""``soundscape export CHECKPOINT``: export a training checkpoint to ONNX, check it, register it.

A head checkpoint (``soundscape train --backbone``) is composed with its backbone into one model
(:mod:`training.head_export`) and registered the same way.

``soundscape export CKPT1 CKPT2 ... --ensemble`` exports several checkpoints with the same labels and front
end as one ONNX graph (mean of the members' probabilities, concatenated embeddings), registered the same way.

Exit codes: ``0`` registered, ``2`` bad input (missing checkpoint or audio, bad settings), ``1`` export or
parity failure (nothing registered).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from model_store import DEFAULT_MODEL_NAME, add_write_store_argument

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from typing import get_args

    from training.export import ExportConfig
    from training.metrics import Metric

    def tolerance(flag: str, field: str) -> None:
        info = ExportConfig.model_fields[field]
        parser.add_argument(flag, dest=field, type=float, default=info.default, help=info.description)

    parser.add_argument("checkpoint", type=Path, nargs="+",
                        help="Training checkpoint (best.pt of a run; of a --backbone run: the head, composed with its "
                             "backbone into one model); several with --ensemble.")
    parser.add_argument("--ensemble", action="store_true",
                        help="Export the checkpoints (at least two, same labels and front end) as ONE ONNX graph: "
                             "its probabilities are the mean of the members' (logits = logit(mean of the "
                             "sigmoids)), its embedding the members' embeddings concatenated. No int8.")
    add_write_store_argument(parser)
    parser.add_argument("--name", default=DEFAULT_MODEL_NAME, help="Model name in the store.")
    parser.add_argument("--quantize", choices=["int8"], default=None,
                        help="Try int8 (static QDQ); registered only if the metric drops by <= --tolerance.")
    parser.add_argument("--quantize-mode", choices=["static", "dynamic"], default="static",
                        help="onnxruntime quantization mode (dynamic is slower than fp32 on CNNs).")
    parser.add_argument("--tolerance", type=float, default=0.01, help="Largest metric drop accepted for int8.")
    parser.add_argument("--metric", choices=list(get_args(Metric)), default="macro_roc_auc",
                        help="Metric checked for int8.")
    parser.add_argument("--promote", action="store_true", help="Mark the new version as production.")
    parser.add_argument("--parent-version", type=int, default=None, help="Version this model replaces.")
    parser.add_argument("--soundscapes-labels", type=Path, default=None,
                        help="soundscape_labels.csv to score on (default: the checkpoint's, if present).")
    parser.add_argument("--soundscapes-dir", type=Path, default=None, help="Folder of the soundscapes.")
    parser.add_argument("--audio", type=Path, nargs="+", default=None,
                        help="Audio files/folders for the parity check when there are no soundscapes.")
    tolerance("--prob-atol", "prob_atol")
    tolerance("--atol", "atol")
    tolerance("--rtol", "rtol")
    parser.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="auto",
                        help="torch.onnx exporter (auto: dynamo, TorchScript if dynamo cannot trace).")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17).")


def run(args: argparse.Namespace) -> int:
    from model_store import ModelStore, StoreError
    from training.export import ExportConfig, ExportError
    from training.quantize import QuantizeConfig
    from training.register import PublishConfig

    checkpoints = list(args.checkpoint)
    if len(checkpoints) > 1 and not args.ensemble:
        log.error("%d checkpoints given: pass --ensemble to export them as one averaged model, or give one",
                  len(checkpoints))
        return 2
    if args.ensemble and len(checkpoints) < 2:
        log.error("--ensemble needs at least two checkpoints, got %d", len(checkpoints))
        return 2
    try:
        cfg = PublishConfig(
            name=args.name, quantize=args.quantize == "int8", promote=args.promote, parent_version=args.parent_version,
            soundscapes_labels=args.soundscapes_labels, soundscapes_dir=args.soundscapes_dir, audio=args.audio,
            export=ExportConfig(opset=args.opset, exporter=args.exporter, prob_atol=args.prob_atol, atol=args.atol,
                                rtol=args.rtol),
            quantization=QuantizeConfig(mode=args.quantize_mode, metric=args.metric, tolerance=args.tolerance),
        )
        if not args.ensemble and is_head_checkpoint(checkpoints[0]):
            summary = _publish_head(checkpoints[0], ModelStore(args.store), cfg)
        else:
            summary = _publish(checkpoints if args.ensemble else checkpoints[0], ModelStore(args.store), cfg)
    except (ValueError, FileNotFoundError, StoreError) as exc:  # pydantic's ValidationError is a ValueError
        log.error("%s", exc)
        return 2
    except ExportError as exc:
        log.error("%s", exc)
        return 1
    print(json.dumps(summary | {"promoted": args.promote,
                                "path": str(Path(args.store) / summary["name"] / f"v{summary['version']}")}, indent=2))
    return 0


def is_head_checkpoint(path: Path) -> bool:
    """Whether ``path`` holds an embedding head (:mod:`training.embedding_head`); unreadable files are left to
    the fine-tuning path, which reports them."""
    from training.embedding_head import is_head_checkpoint as check

    try:
        return check(path)
    except FileNotFoundError:
        raise
    except Exception:  # torch.load raises several types on files it cannot read
        return False


def _publish_head(checkpoint: Path, store, cfg) -> dict:
    """A head checkpoint composed with its backbone and registered (:func:`training.head_export.publish_head`)."""
    from training.head_export import publish_head

    result = publish_head(checkpoint, store, cfg)
    card = result.card
    return {"name": card.name, "version": card.version, "architecture": card.architecture, "runtime": card.runtime,
            "sha256": card.sha256, "head": card.head.model_dump(), "license": card.license, "metrics": card.metrics,
            "parity": card.training["export"]}


def _publish(checkpoint, store, cfg) -> dict:
    from training.register import publish

    result = publish(checkpoint, store, cfg)
    card = result.card
    return {
        "name": card.name, "version": card.version, "precision": card.precision,
        "architecture": card.architecture, "sha256": card.sha256, "metrics": card.metrics,
        "exporter": result.export.exporter, "parity_max_abs_diff_logits": result.export.max_abs_diff_logits,
        "parity": result.export.parity(),
        "quantization": result.quantization.message if result.quantization else None,
    }
