"""Real files for export / register / retrain tests: tone recordings, labelled soundscapes, checkpoints.

Each species sings a tone at its own frequency, so a model can tell them apart and metrics are
meaningful. Everything is written at the tiny front end's 16 kHz and kept short.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.utils.models import DEFAULT_CODES, tiny_frontend, write_tiny_onnx

FREQS = {code: 600.0 + 900.0 * i for i, code in enumerate(DEFAULT_CODES)}
SR = 16000


def _tone(code: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    chirps = (np.sin(2 * np.pi * 3 * t) > 0).astype(np.float32)  # on-off calls
    return (0.3 * np.sin(2 * np.pi * FREQS[code] * t) * chirps).astype(np.float32)


def write_soundscapes(root: Path, *, n: int = 3, seconds: float = 20.0, seed: int = 0) -> tuple[Path, Path]:
    """``n`` soundscapes of ``seconds`` with 0-2 species per 5 s window; returns (labels csv, folder)."""
    rng = np.random.default_rng(seed)
    folder = root / "soundscapes"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in range(n):
        sid = f"ss{s}"
        audio = 0.02 * rng.standard_normal(int(seconds * SR)).astype(np.float32)
        for w in range(int(seconds // 5)):
            birds = list(rng.choice(DEFAULT_CODES, size=rng.integers(0, 3), replace=False))
            if s == 0 and w < len(DEFAULT_CODES):  # every species appears at least once
                birds = sorted(set(birds) | {DEFAULT_CODES[w]})
            a, b = w * 5 * SR, (w + 1) * 5 * SR
            for code in birds:
                audio[a:b] += _tone(code, 5.0, rng)
            rows.append({"row_id": f"{sid}_{(w + 1) * 5}", "soundscape_id": sid, "end_time": (w + 1) * 5,
                         "birds": " ".join(birds) or "nocall"})
        sf.write(folder / f"{sid}.wav", audio, SR)
    labels = root / "soundscape_labels.csv"
    with open(labels, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["row_id", "soundscape_id", "end_time", "birds"])
        writer.writeheader()
        writer.writerows(rows)
    return labels, folder


def write_clips(root: Path, *, per_species: int = 3, seconds: float = 6.0, seed: int = 0) -> tuple[Path, Path]:
    """Focal clips in BirdCLEF layout; returns (train_metadata.csv, audio root)."""
    rng = np.random.default_rng(seed)
    audio_root = root / "train_audio"
    rows = []
    for code in DEFAULT_CODES:
        (audio_root / code).mkdir(parents=True, exist_ok=True)
        for i in range(per_species):
            x = _tone(code, seconds, rng) + 0.02 * rng.standard_normal(int(seconds * SR)).astype(np.float32)
            sf.write(audio_root / code / f"{code}_{i}.wav", x, SR)
            rows.append({"primary_label": code, "secondary_labels": "[]", "filename": f"{code}/{code}_{i}.wav",
                         "rating": 4.0})
    metadata = root / "train_metadata.csv"
    with open(metadata, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["primary_label", "secondary_labels", "filename", "rating"])
        writer.writeheader()
        writer.writerows(rows)
    taxonomy = root / "taxonomy.csv"
    with open(taxonomy, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["primary_label", "common_name", "scientific_name"])
        writer.writerows([c, f"Common {c}", f"Avis {c}"] for c in DEFAULT_CODES)
    return metadata, audio_root


def write_checkpoint(path: Path, *, arch: str = "test_efficientnet", seed: int = 0, train_config: dict | None = None,
                     run_files: bool = True) -> Path:
    """A checkpoint of an untrained tiny timm model for the tiny front end (no resume state, no validation info)."""
    import torch

    from model_store import DataSummary, Label
    from training.checkpoint import Checkpoint
    from training.models import create_model

    torch.manual_seed(seed)
    kwargs = {"num_classes": len(DEFAULT_CODES), "in_chans": 1, "drop_rate": 0.0, "drop_path_rate": 0.0}
    model = create_model(arch, **kwargs)
    ckpt = Checkpoint(
        arch=arch, model_kwargs=kwargs, state_dict=model.state_dict(),
        labels=[Label(code=c, common_name=f"Common {c}", scientific_name=f"Avis {c}") for c in DEFAULT_CODES],
        frontend=tiny_frontend(), epoch=1, metrics={"macro_roc_auc": 0.61, "padded_cmap": 0.42},
        per_species_ap={c: 0.5 for c in DEFAULT_CODES},
        data=DataSummary(train_clips=12, val_clips=0, clips_per_label={c: 3 for c in DEFAULT_CODES}, source="tests"),
        train_config=train_config or {},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt.save(path)
    if run_files:
        (path.parent / "metrics.csv").write_text("epoch,macro_roc_auc\n1,0.61\n")
    return path


def write_fitted_onnx(path: Path, windows: np.ndarray, targets: np.ndarray, *, sign: float = 1.0) -> Path:
    """The tiny linear ONNX model of :mod:`tests.utils.models`, least-squares fitted to labelled windows.

    ``sign=1`` gives a model that ranks the windows well (high ROC-AUC), ``sign=-1`` one that ranks them
    backwards (ROC-AUC near 0): real models with known quality for quantization and retrain tests.
    """
    import onnx
    from onnx import numpy_helper

    from soundscape.audio import Frontend

    fe = tiny_frontend()
    features = Frontend(fe)(windows).mean(axis=2)  # (n, n_mels): what the graph's ReduceMean gives
    x = np.hstack([features, np.ones((len(features), 1), np.float32)])
    coef = np.linalg.lstsq(x, 2.0 * targets - 1.0, rcond=None)[0] * sign
    path = write_tiny_onnx(path, fe, targets.shape[1])
    model = onnx.load(path)
    for init in model.graph.initializer:
        if init.name == "W":
            init.CopyFrom(numpy_helper.from_array(coef[:-1].astype(np.float32), "W"))
        elif init.name == "B":
            init.CopyFrom(numpy_helper.from_array(coef[-1].astype(np.float32), "B"))
    onnx.save(model, path)
    return path
