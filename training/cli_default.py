"""``soundscape build-default-model``: rebuild the bundled default model from the demo data, seeded.

Steps: generate the demo dataset (``small``, fixed seed) -> fine-tune ``tf_efficientnet_lite0`` from its
ImageNet weights with the full recipe -> export and check -> int8 if the soundscape metric holds within
``--tolerance``, else fp32 -> register and promote into the store (the user store by default; the bundled
``model_store/default`` is read-only unless ``SOUNDSCAPE_WRITE_BUNDLED=1``, for maintainers rebuilding it).
The result must be under ``--max-mb`` (15 MB).

Smoke settings (``--max-steps-per-epoch``) are refused for the bundled store: they would ship an
untrained model. Use ``--store`` with a scratch folder for those.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from model_store import DEFAULT_MODEL_NAME, add_write_store_argument
from model_store.locations import is_bundled

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .config import add_micro_batch_argument

    add_write_store_argument(parser)
    parser.add_argument("--name", default=DEFAULT_MODEL_NAME, help="Model name.")
    parser.add_argument("--work-dir", type=Path, default=Path("build/default-model"),
                        help="Demo data, audio cache and the training run go here.")
    parser.add_argument("--size", default="small", help="Demo dataset size.")
    parser.add_argument("--profile", default="field", choices=["field", "clean"], help="Demo data profile.")
    parser.add_argument("--data-seed", type=int, default=0, help="Demo dataset seed.")
    parser.add_argument("--seed", type=int, default=0, help="Training seed.")
    parser.add_argument("--epochs", type=int, default=None,
                        help="Epochs of the first round (default: TrainConfig's, 6 x 1024 samples; with the 3-epoch "
                             "student round about 20 min on 2 idle cores).")
    parser.add_argument("--batch-size", type=int, default=32, help="Batch size.")
    add_micro_batch_argument(parser)
    parser.add_argument("--lr", type=float, default=1e-3, help="Peak learning rate.")
    parser.add_argument("--max-steps-per-epoch", type=int, default=None, help="Cap on steps (smoke runs only).")
    parser.add_argument("--tolerance", type=float, default=0.01, help="Largest padded cmAP drop accepted for int8.")
    parser.add_argument("--max-mb", type=float, default=15.0, help="Refuse a model file larger than this.")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers.")


def run(args: argparse.Namespace) -> int:
    from model_store import ModelStore
    from soundscape.demo import generate_dataset
    from training import TrainConfig, train
    from training.export import ExportError
    from training.quantize import QuantizeConfig
    from training.register import PublishConfig, publish

    if args.max_steps_per_epoch is not None and is_bundled(args.store):
        log.error("--max-steps-per-epoch is for smoke runs: refusing to write an undertrained model into the "
                  "bundled store %s (pass --store SCRATCH)", args.store)
        return 2
    t0 = time.perf_counter()
    work = Path(args.work_dir)
    data = generate_dataset(work / "data", seed=args.data_seed, size=args.size, profile=args.profile)
    log.info("demo data (%s, seed %d) in %s after %.0f s", args.size, args.data_seed, data, time.perf_counter() - t0)
    unlabelled = data / "unlabelled"
    cfg = TrainConfig(  # the default recipe; labelled soundscapes are only logged, pseudo-soundscapes select
        metadata=data / "train_metadata.csv", audio_root=data / "train_audio", taxonomy=data / "taxonomy.csv",
        soundscapes_labels=data / "soundscape_labels.csv", soundscapes_dir=data / "soundscapes",
        backgrounds_dir=data / "backgrounds", unlabelled_dir=unlabelled if unlabelled.is_dir() else None,
        out_dir=work / "run", cache_dir=work / "cache", arch="tf_efficientnet_lite0", pretrained=True,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, max_steps_per_epoch=args.max_steps_per_epoch,
        num_workers=args.num_workers, **({"epochs": args.epochs} if args.epochs else {}),
        **({"micro_batch": args.micro_batch} if args.micro_batch is not None else {}),
    )
    result = train(cfg)
    t_train = time.perf_counter() - t0
    store = ModelStore(args.store)
    parent = store.production(args.name)
    try:
        published = publish(result.best_checkpoint, store, PublishConfig(
            name=args.name, quantize=True, promote=False, parent_version=parent, cache_dir=cfg.cache_dir,
            quantization=QuantizeConfig(metric=cfg.monitor, tolerance=args.tolerance),
            notes=f"bundled demo model: knows only the 14 invented species of the synthetic demo data "
                  f"(soundscape.demo), no real bird. soundscape build-default-model (demo {args.profile} "
                  f"{args.size}, data seed {args.data_seed}, seed {args.seed}, {cfg.epochs} epochs of "
                  f"{cfg.epoch_samples} samples + self-training)"))
    except (ValueError, ExportError) as exc:
        log.error("%s", exc)
        return 1
    card = published.card
    size_mb = (store.version_dir(card.name, card.version) / "model.onnx").stat().st_size / 1e6
    if size_mb > args.max_mb:  # registered for inspection, but never promoted
        log.error("%s v%d is %.1f MB, over --max-mb %.1f: not promoted", card.name, card.version, size_mb,
                  args.max_mb)
        return 1
    store.promote(card.name, card.version)
    print(json.dumps({
        "store": str(args.store), "name": card.name, "version": card.version, "precision": card.precision,
        "size_mb": round(size_mb, 2), "metrics": card.metrics,
        "quantization": published.quantization.message if published.quantization else None,
        "train_seconds": round(t_train), "total_seconds": round(time.perf_counter() - t0),
    }, indent=2))
    return 0
