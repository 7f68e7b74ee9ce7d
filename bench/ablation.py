"""Training-recipe ablation on the demo data: the plain recipe against the full BirdCLEF recipe.

Both runs fine-tune ``tf_efficientnet_lite0`` from its ImageNet weights with the same seed, data,
epochs and batch size, and are scored the same way: exported to ONNX and run through the serving path
(:func:`training.evaluate.evaluate_model`) on the demo's labelled soundscapes. Only the recipe differs:

- plain: no augmentation (``AugmentConfig.off()``), uniform sampling (``sampling_alpha=0``);
- full: the default ``AugmentConfig`` (noise, background mixing, shift, speed, pitch, gain, SpecAugment,
  mixup, cutmix) and sampling weights ``count^-0.5``.

Reported per recipe: macro ROC-AUC, padded cmAP, rare-species AP (mean AP over the species with the
fewest training clips that occur in the soundscapes) and training throughput (samples/s).

Usage::

    .venv/bin/python bench/ablation.py --epochs 3          # writes bench/results/ablation.{json,md}
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("macro_roc_auc", "padded_cmap", "rare_species_ap")


def rare_species(data_dir: Path, max_clips: int) -> list[str]:
    """Species with at most ``max_clips`` focal clips in ``train_metadata.csv``."""
    with open(data_dir / "train_metadata.csv", newline="") as f:
        counts: dict[str, int] = {}
        for row in csv.DictReader(f):
            counts[row["primary_label"]] = counts.get(row["primary_label"], 0) + 1
    return sorted(c for c, n in counts.items() if n <= max_clips)


def run_recipe(name: str, data: Path, work: Path, args: argparse.Namespace, rare: list[str]) -> dict:
    from soundscape.audio import FrontendConfig
    from training import AugmentConfig, TrainConfig, load_checkpoint, train
    from training.evaluate import evaluate_model, load_validation, unregistered_model
    from training.export import ExportConfig, export_onnx, model_from_checkpoint
    from training.register import build_card, spread_images

    recipe = {"augment": AugmentConfig.off(), "sampling_alpha": 0.0} if name == "plain" else {
        "augment": AugmentConfig(), "sampling_alpha": 0.5}
    cfg = TrainConfig(
        metadata=data / "train_metadata.csv", audio_root=data / "train_audio", taxonomy=data / "taxonomy.csv",
        soundscapes_labels=data / "soundscape_labels.csv", soundscapes_dir=data / "soundscapes",
        backgrounds_dir=data / "backgrounds", out_dir=work / name, cache_dir=work / "cache",
        arch="tf_efficientnet_lite0", pretrained=True, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, seed=args.seed, max_steps_per_epoch=args.max_steps_per_epoch,
        early_stopping_patience=None, **recipe,
    )
    t0 = time.perf_counter()
    result = train(cfg)
    train_s = time.perf_counter() - t0
    ckpt = load_checkpoint(result.last_checkpoint)  # same epoch count for both recipes
    frontend = FrontendConfig.model_validate(ckpt["frontend"])
    codes = [lab["code"] for lab in ckpt["labels"]]
    val = load_validation(cfg.soundscapes_labels, cfg.soundscapes_dir, codes, frontend, cache_dir=cfg.cache_dir)
    onnx_path = work / f"{name}.onnx"
    exported = export_onnx(model_from_checkpoint(ckpt), onnx_path, spread_images(frontend, val.windows, 8),
                           ExportConfig())
    ev = evaluate_model(unregistered_model(build_card(ckpt, exported, name="ablation"), onnx_path), val)
    rare_aps = [ev.per_species_ap[c] for c in rare if c in ev.per_species_ap]
    history = result.history
    sps = [float(h["samples_per_s"]) for h in history if "samples_per_s" in h]
    samples = len(history) * min(args.max_steps_per_epoch or 10**9,
                                 -(-ckpt["data"]["train_clips"] // args.batch_size)) * args.batch_size
    return {
        "macro_roc_auc": ev.metrics["macro_roc_auc"], "padded_cmap": ev.metrics["padded_cmap"],
        "rare_species_ap": float(np.mean(rare_aps)) if rare_aps else float("nan"),
        "rare_species_scored": [c for c in rare if c in ev.per_species_ap],
        "per_species_ap": ev.per_species_ap, "windows": ev.n_windows,
        "samples_per_s_median_epoch": float(np.median(sps)) if sps else float("nan"),
        "train_seconds": train_s, "train_samples": samples, "epochs": len(history),
        "history": history,
    }


def write_results(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    plain, full = results["recipes"]["plain"], results["recipes"]["full"]
    lines = [
        "| recipe | macro ROC-AUC | padded cmAP | rare-species AP | train samples/s (median epoch) | train time |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in (("plain (no augmentation, uniform sampling)", plain), ("full recipe", full)):
        lines.append(f"| {name} | {r['macro_roc_auc']:.4f} | {r['padded_cmap']:.4f} | {r['rare_species_ap']:.4f} "
                     f"| {r['samples_per_s_median_epoch']:.2f} | {r['train_seconds'] / 60:.1f} min |")
    lines.append("| full - plain | " + " | ".join(f"{full[m] - plain[m]:+.4f}" for m in METRICS) + " | | |")
    s = results["settings"]
    lines += ["", f"Demo data size `{s['size']}`, data seed {s['data_seed']}, training seed {s['seed']}, "
              f"{s['epochs']} epochs, batch {s['batch_size']}, {plain['windows']} soundscape windows scored "
              f"through ONNX Runtime; rare species (<= {s['rare_max_clips']} clips): "
              f"{', '.join(full['rare_species_scored'])}.", ""]
    (out / "ablation.md").write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small", help="Demo dataset size.")
    parser.add_argument("--data-seed", type=int, default=1, help="Demo data seed (tests use 0).")
    parser.add_argument("--seed", type=int, default=0, help="Training seed.")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-steps-per-epoch", type=int, default=None)
    parser.add_argument("--rare-max-clips", type=int, default=14, help="A species is rare with <= this many clips.")
    parser.add_argument("--work-dir", type=Path, default=None, help="(Default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from soundscape.demo import generate_dataset

    with tempfile.TemporaryDirectory(prefix="ablation-") as tmp:
        work = args.work_dir or Path(tmp)
        t0 = time.perf_counter()
        data = generate_dataset(work / "data", seed=args.data_seed, size=args.size)
        rare = rare_species(data, args.rare_max_clips)
        results = {"settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}},
                   "recipes": {}}
        for name in ("plain", "full"):
            results["recipes"][name] = run_recipe(name, data, work, args, rare)
            logging.info("%s: %s", name, {m: round(results["recipes"][name][m], 4) for m in METRICS})
        results["full_minus_plain"] = {m: results["recipes"]["full"][m] - results["recipes"]["plain"][m]
                                       for m in METRICS}
        results["total_seconds"] = time.perf_counter() - t0
    write_results(results, args.out)
    print(json.dumps(results["full_minus_plain"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
