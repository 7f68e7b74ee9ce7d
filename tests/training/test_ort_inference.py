"""Pseudo-labelling runs the teacher through ONNX Runtime (the serving path) and matches eager PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import training.self_training as st
from soundscape.audio import Frontend
from tests.training.conftest import SPECIES, call, fast_config
from training import Checkpoint, train
from training.data import list_audio_files
from training.export import model_from_checkpoint
from training.pseudo_soundscapes import split_unlabelled


@pytest.fixture(scope="module")
def teacher(tiny_data, tmp_path_factory) -> tuple[Path, object]:
    """A one-epoch checkpoint and a config whose unlabelled folder holds 12 s recordings (calls then quiet)."""
    root = tmp_path_factory.mktemp("ort")
    unlabelled = root / "unlabelled"
    unlabelled.mkdir()
    rng = np.random.default_rng(7)
    for i, code in enumerate(SPECIES):
        audio = 0.01 * rng.standard_normal(12 * 16000).astype(np.float32)
        audio[: 5 * 16000] += call(SPECIES[code][0], 5.0, 16000, rng)
        sf.write(unlabelled / f"site_{i}.flac", audio, 16000)
    cfg = fast_config(tiny_data, root / "run", unlabelled_dir=unlabelled)
    return train(cfg).best_checkpoint, cfg


def _eager(checkpoint: Path, cfg) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Files, starts and eager PyTorch probabilities of every unlabelled window, on the serving front end."""
    ckpt = Checkpoint.load(checkpoint)
    model = model_from_checkpoint(ckpt)
    fe = Frontend(cfg.frontend)
    _, files = split_unlabelled(list_audio_files(cfg.unlabelled_dir))
    names, starts, probs = [], [], []
    for f in files:
        audio, rate = sf.read(f, dtype="float32")
        assert rate == cfg.frontend.sample_rate
        cut = fe.windows(audio)
        with torch.no_grad():
            probs.append(torch.sigmoid(model(torch.from_numpy(fe(cut.samples)[:, None]))).numpy())
        names += [str(f)] * len(cut.samples)
        starts += list(cut.starts_s)
    return names, np.asarray(starts), np.concatenate(probs)


def test_pseudo_labels_are_the_onnx_teacher_and_match_eager_pytorch(teacher):
    checkpoint, cfg = teacher
    labels = st.label_unlabelled(checkpoint, cfg)
    names, starts, probs = _eager(checkpoint, cfg)
    assert labels.files == names and np.array_equal(labels.starts_s, starts)
    assert labels.probs.dtype == np.float32 and labels.probs.shape == probs.shape == (6, len(SPECIES))
    assert labels.codes == Checkpoint.load(checkpoint).codes
    np.testing.assert_allclose(labels.probs, probs, rtol=0, atol=1e-4)


def test_pseudo_labels_are_what_the_engine_serves(teacher):
    checkpoint, cfg = teacher
    labels = st.label_unlabelled(checkpoint, cfg, batch_size=4)
    fe = Frontend(cfg.frontend)
    first = fe.windows(sf.read(labels.files[0], dtype="float32")[0]).samples[:2]
    engine = st.teacher_engine(checkpoint, fe(first)[:, None], threads=1)
    assert engine.runtime.kind == "onnxruntime"
    served, _ = engine.run(engine.frontend(first))
    np.testing.assert_allclose(labels.probs[:2], served, rtol=0, atol=1e-6)


def test_no_readable_window_gives_empty_pseudo_labels(teacher, tmp_path):
    checkpoint, cfg = teacher
    (tmp_path / "empty").mkdir()
    labels = st.label_unlabelled(checkpoint, cfg.model_copy(update={"unlabelled_dir": tmp_path / "empty"}))
    assert labels.files == [] and labels.probs.shape == (0, len(labels.codes))


def test_cpu_validation_through_onnx_runtime_matches_eager(tiny_data, tmp_path, monkeypatch):
    from training import loop
    from training.models import create_model

    cfg = fast_config(tiny_data, tmp_path / "run")
    ctx = loop._Dist()
    data = loop.prepare_data(cfg, ctx)
    kwargs = {"num_classes": len(data.labels), "in_chans": 1}
    model = create_model(cfg.arch, pretrained=False, **kwargs).train()
    windows = {kind: vd.windows for kind, vd in data.val_sets.items()}
    sets = loop._validation_images(data, batch_size=5)
    assert not data.val_sets and list(sets) == list(windows)  # the waveforms are let go, the order kept
    fe = Frontend(cfg.frontend)
    for kind, vd in sets.items():  # the images the serving front end gives, whatever the batch
        np.testing.assert_array_equal(vd.images, fe(windows[kind]))
    eager, eager_ap = loop._validate(model, sets, cfg, ctx, kwargs)  # a few dozen windows: eager
    monkeypatch.setattr(loop, "ORT_MIN_WINDOWS", 0)
    called = []
    real = loop._ort_scorer
    monkeypatch.setattr(loop, "_ort_scorer", lambda *a: called.append(1) or real(*a))
    rng = torch.get_rng_state()
    onnx, onnx_ap = loop._validate(model, sets, cfg, ctx, kwargs)
    assert called and torch.equal(torch.get_rng_state(), rng) and model.training  # the run is left as it was
    assert eager.keys() == onnx.keys() and eager_ap.keys() == onnx_ap.keys()
    for k, v in eager.items():
        assert onnx[k] == pytest.approx(v, abs=1e-3), k
