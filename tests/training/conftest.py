"""Real tiny BirdCLEF-layout data for the training tests (tone-like calls, mixed formats and rates)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.utils.models import tiny_frontend
from training import AugmentConfig, TrainConfig
from training.pseudo_soundscapes import PseudoSoundscapeConfig

# code -> (call frequency Hz, clips); 'houspa' has a single clip.
SPECIES = {"amered": (1200.0, 6), "bkcchi": (2500.0, 4), "comrav": (4000.0, 3), "houspa": (6000.0, 1)}
FORMATS = [("wav", 22050), ("flac", 16000), ("ogg", 32000)]


def call(freq: float, seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A bird-like call: repeated 0.3 s tone bursts with vibrato, over faint noise."""
    t = np.arange(int(seconds * rate)) / rate
    envelope = (np.sin(2 * np.pi * 1.5 * t + rng.uniform(0, 6)) > 0.3).astype(np.float64)
    tone = np.sin(2 * np.pi * freq * t + 3 * np.sin(2 * np.pi * 8 * t))
    return (0.5 * envelope * tone + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def write_dataset(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    k = 0
    for code, (freq, n) in SPECIES.items():
        (root / "train_audio" / code).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            ext, rate = FORMATS[k % len(FORMATS)]
            k += 1
            name = f"{code}/{code}_{i}.{ext}"
            sf.write(root / "train_audio" / name, call(freq, rng.uniform(3.0, 8.0), rate, rng), rate)
            others = [c for c in SPECIES if c != code]
            secondary = [others[i % 3]] if i % 2 == 0 else []
            rows.append({"primary_label": code, "secondary_labels": str(secondary), "filename": name,
                         "rating": "4.0", "common_name": code.upper()})
    # Problems: a missing file, an unknown label, unreadable audio, an unknown secondary label.
    rows.append({"primary_label": "amered", "secondary_labels": "[]", "filename": "amered/gone.ogg",
                 "rating": "3", "common_name": "AMERED"})
    (root / "train_audio" / "zzznew").mkdir()
    sf.write(root / "train_audio" / "zzznew" / "x.wav", call(900, 4, 16000, rng), 16000)
    rows.append({"primary_label": "zzznew", "secondary_labels": "[]", "filename": "zzznew/x.wav",
                 "rating": "3", "common_name": "NEW"})
    (root / "train_audio" / "bkcchi" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00not really audio")
    rows.append({"primary_label": "bkcchi", "secondary_labels": "['nosuch']", "filename": "bkcchi/broken.wav",
                 "rating": "3", "common_name": "BKCCHI"})
    with open(root / "train_metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(root / "taxonomy.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["primary_label", "common_name", "scientific_name", "call_type"])
        for code in SPECIES:
            writer.writerow([code, code.title(), f"Avis {code}", "song"])
    # One 20 s soundscape: windows ending at 5, 10, 15, 20 s.
    (root / "soundscapes").mkdir()
    rate = 32000
    scape = 0.01 * rng.standard_normal(20 * rate).astype(np.float32)
    birds = ["amered", "nocall", "bkcchi comrav", "houspa"]
    for w, label in enumerate(birds):
        for code in label.split():
            if code != "nocall":
                scape[w * 5 * rate : (w + 1) * 5 * rate] += call(SPECIES[code][0], 5.0, rate, rng)
    sf.write(root / "soundscapes" / "S01.ogg", scape, rate)
    with open(root / "soundscape_labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["row_id", "soundscape_id", "end_time", "birds"])
        for w, label in enumerate(birds):
            writer.writerow([f"S01_{(w + 1) * 5}", "S01", (w + 1) * 5, label])
    (root / "backgrounds").mkdir()
    for i in range(2):
        sf.write(root / "backgrounds" / f"bg{i}.ogg", (0.1 * rng.standard_normal(8 * 16000)).astype(np.float32),
                 16000)
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("birdclef"))


def fast_config(data: Path, out: Path, **overrides) -> TrainConfig:
    """A seconds-long run: timm's ``test_efficientnet``, 16 kHz / 32 mels, batch 4, 2 steps per epoch."""
    params = dict(
        metadata=data / "train_metadata.csv", audio_root=data / "train_audio", taxonomy=data / "taxonomy.csv",
        out_dir=out, cache_dir=out.parent / f"{out.name}-cache", arch="test_efficientnet", pretrained=False,
        frontend=tiny_frontend(), epochs=1, batch_size=4, lr=1e-3, warmup_epochs=0.5, max_steps_per_epoch=2,
        val_batch_size=8, augment=AugmentConfig(), backgrounds_dir=data / "backgrounds",
        early_stopping_patience=None, pseudo=PseudoSoundscapeConfig(n_windows=24),
    )
    params.update(overrides)
    return TrainConfig(**params)
