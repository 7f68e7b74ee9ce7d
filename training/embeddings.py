"""A frozen backbone's embeddings of training crops and validation windows, computed once and cached.

The backbone is a verified store version with an embedding output (:func:`load_backbone`), run by
:class:`soundscape.inference.Engine` exactly as it is served: its own front end and runtime (BirdNET: 48 kHz
waveform, LiteRT, 3-s model windows at 0 and 2 s of each 5-s window). Embeddings are kept **per model window**
(``(n, k, dim)``, not the engine's mean over a window's ``k`` model windows): a head scores every model window
and a window's probability is the max over its model windows, the card's ``pool`` rule, in training as in
serving.

Training rows (:func:`training_embeddings`): ``crops_per_clip`` crops of every training clip (the call crops
of :class:`training.data.ClipDataset`, crop ``r`` of clip ``i`` drawn as epoch ``r + 1``), each batch passed
through the recipe's waveform steps (:meth:`training.augment.Augmenter.waveform`: far field, other clips, beds,
recorder, noise, gain; targets as they leave it), then embedded. Spectrogram steps (SpecAugment, mixup,
cutmix) act on a mel model's images, not on cached embeddings, and are not applied.

The cache (``<cache_dir>/embeddings/<backbone sha256[:12]>-<kind>-<key>.npz``) is keyed by everything the rows
depend on: the backbone file's sha256 and front end, the seed, the crop and augmentation settings, the clips
(path, size, modification time, span, labels) and the beds' samples; validation sets by their windows' and
targets' bytes. A second run with the same data and settings computes no embedding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from model_store import CARD_FILE, ModelStore, StoreError, VerifiedModel, load_folder, serving_store_path
from soundscape.inference import Engine

from .augment import Augmenter
from .config import TrainConfig
from .data import bed_samples
from .evaluate import ValidationData
from .loop import TrainData

__all__ = ["EMBEDDINGS_VERSION", "Embedded", "embed_windows", "load_backbone", "training_embeddings",
           "validation_embeddings"]

log = logging.getLogger(__name__)

EMBEDDINGS_VERSION = 1  # bump when the rows of a key change meaning


@dataclass(frozen=True)
class Embedded:
    """Embeddings of a set of windows and where they are cached.

    Attributes:
        embeddings (np.ndarray): ``(n, k, dim)`` float32, each window's ``k`` model windows.
        targets (np.ndarray): ``(n, n_classes)`` float32.
        rows (np.ndarray): ``(n,)`` int: the training clip of each row (validation sets: the window's index).
        file (Path): the cache file.
        computed (int): windows embedded by this call (0: read from the cache).
        seconds (float): time spent (embedding, or reading).
    """

    embeddings: np.ndarray
    targets: np.ndarray
    rows: np.ndarray
    file: Path
    computed: int
    seconds: float

    def summary(self) -> dict:
        return {"file": str(self.file), "windows": len(self.embeddings), "model_windows": self.embeddings.shape[1],
                "dim": self.embeddings.shape[2], "computed": self.computed, "seconds": round(self.seconds, 2)}


def load_backbone(spec: str, store: Path | None = None) -> VerifiedModel:
    """The backbone a head is trained on: ``name[:version]`` in ``store`` (default: the serving store), or a
    version folder (or its ``card.json``), verified; it must have an embedding output and no head.

    Raises:
        ValueError: not found, not verified, no embedding output, or a model with a head (one line).
    """
    path = Path(spec)
    folder = path.parent if path.name == CARD_FILE else path
    try:
        if folder.is_dir():
            model = load_folder(folder)
        else:
            name, _, version = spec.partition(":")
            if version and not version.isdigit():
                raise ValueError(f"backbone {spec!r}: the version after ':' must be a number")
            model = ModelStore(store or serving_store_path(name)).load(name, int(version) if version else None)
    except StoreError as exc:
        raise ValueError(f"backbone {spec!r}: {exc.message}") from None
    card = model.card
    if card.embedding_output is None:
        raise ValueError(f"backbone {card.name} v{card.version} has no embedding output to train a head on")
    if card.head is not None:
        raise ValueError(f"backbone {card.name} v{card.version} already has a head; train on its own backbone "
                         f"{card.head.backbone.name} v{card.head.backbone.version}")
    return model


def embed_windows(engine: Engine, windows: np.ndarray, batch: int, desc: str | None = None) -> np.ndarray:
    """Per-model-window embeddings ``(n, k, dim)`` of report windows ``(n, window_samples)`` (a progress bar
    named ``desc``, when given)."""
    parts = [engine.model_window_embeddings(engine.frontend(np.asarray(windows[a : a + batch], np.float32)))
             for a in tqdm(range(0, len(windows), batch), desc=desc, unit="batch", leave=False, disable=desc is None)]
    if parts:
        return np.concatenate(parts)
    return np.zeros((0, len(engine.card.frontend.model_offsets), engine.card.embedding_output.shape[-1] or 0),
                    np.float32)


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _cache_file(cfg: TrainConfig, engine: Engine, kind: str, key: str) -> Path:
    return cfg.resolved_cache_dir / "embeddings" / f"{engine.card.sha256[:12]}-{kind}-{key}.npz"


def _read(file: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            return z["embeddings"], z["targets"], z["rows"]
    except (OSError, ValueError, KeyError):
        log.warning("embedding cache %s is damaged; computing it again", file)
        return None


def _write(file: Path, embeddings: np.ndarray, targets: np.ndarray, rows: np.ndarray) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, embeddings=embeddings, targets=targets, rows=rows)
    os.replace(tmp, file)  # atomic: a concurrent run reads the old state or the new one


def _cached(file: Path, compute, what: str) -> Embedded:
    """The cache file's arrays, else ``compute()``'s (written to the cache)."""
    t0 = time.perf_counter()
    found = _read(file)
    if found is not None:
        log.info("%s: %d windows read from %s (none computed)", what, len(found[0]), file)
        return Embedded(*found, file=file, computed=0, seconds=time.perf_counter() - t0)
    embeddings, targets, rows = compute()
    _write(file, embeddings, targets, rows)
    seconds = time.perf_counter() - t0
    log.info("%s: %d windows embedded in %.1f s, cached in %s", what, len(embeddings), seconds, file)
    return Embedded(embeddings, targets, rows, file=file, computed=len(embeddings), seconds=seconds)


def validation_embeddings(cfg: TrainConfig, engine: Engine, vd: ValidationData) -> Embedded:
    """A validation set's per-model-window embeddings (cached by the backbone and the set's bytes)."""
    key = _key({"v": EMBEDDINGS_VERSION, "backbone": engine.card.sha256, "windows": _digest(vd.windows, vd.targets)})

    def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        emb = embed_windows(engine, vd.windows, cfg.head_training.backbone_batch, desc=f"embedding {vd.kind}")
        return emb, vd.targets, np.arange(len(vd.windows))

    return _cached(_cache_file(cfg, engine, vd.kind, key), compute, f"{vd.kind} embeddings")


def _training_key(cfg: TrainConfig, engine: Engine, data: TrainData) -> str:
    clips = data.train.clips
    files = [(str(c.path), os.stat(c.path).st_size, os.stat(c.path).st_mtime_ns, c.span, c.primary, c.secondary)
             for c in clips.clips]
    return _key({"v": EMBEDDINGS_VERSION, "backbone": engine.card.sha256, "frontend": engine.card.frontend.model_dump(),
                 "seed": cfg.seed, "crops": cfg.head_training.crops_per_clip, "batch": cfg.batch_size,
                 "crop": cfg.train_crop, "call_crop_p": cfg.call_crop_p, "augment": cfg.augment.model_dump(),
                 "targets": _digest(clips.targets), "clips": files,
                 "beds": _digest(*map(bed_samples, data.backgrounds)) if data.backgrounds else ""})


def training_embeddings(cfg: TrainConfig, engine: Engine, data: TrainData) -> Embedded:
    """Embeddings of ``crops_per_clip`` augmented crops of every training clip (see the module docstring);
    ``rows`` gives each row's clip."""
    def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _augmented_crops(cfg, engine, data)

    file = _cache_file(cfg, engine, "train", _training_key(cfg, engine, data))
    return _cached(file, compute, "training crop embeddings")


def _augmented_crops(cfg: TrainConfig, engine: Engine, data: TrainData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    clips = data.train.clips
    augmenter = Augmenter(cfg.augment, cfg.frontend.sample_rate, data.backgrounds, data.bed_targets,
                          seed=cfg.seed * 1009)
    order_rng = np.random.default_rng([cfg.seed, 4271])
    embeddings, targets, rows = [], [], []
    crops = cfg.head_training.crops_per_clip
    bar = tqdm(total=crops * len(clips), desc="embedding training crops", unit="crop", leave=False)
    for r in range(crops):
        clips.set_epoch(r + 1)
        order = order_rng.permutation(len(clips))  # mixed batches: other species' clips to mix in
        for a in range(0, len(order), cfg.batch_size):
            idx = order[a : a + cfg.batch_size]
            waves, y = (torch.stack(t) for t in zip(*(clips[int(i)] for i in idx), strict=True))
            waves, y = augmenter.waveform(waves, y)
            embeddings.append(embed_windows(engine, waves.numpy(), cfg.head_training.backbone_batch))
            targets.append(y.numpy())
            rows.append(idx)
            bar.update(len(idx))
    bar.close()
    return np.concatenate(embeddings), np.concatenate(targets), np.concatenate(rows)
