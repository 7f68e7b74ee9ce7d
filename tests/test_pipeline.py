"""The window pipeline against references computed here, independently of the code under test.

- The front end against a direct numpy/scipy log-mel: reflect padding and framing by hand, scipy's periodic
  Hann window, ``numpy.fft.rfft`` in float64, and mel filters built from the Slaney/HTK formulas written out
  below (not ``soundscape.audio.functional``).
- The tiny test model's probabilities against its forward pass in numpy (weights read from the ONNX file:
  mean over channel and time, matrix product, bias, logistic).
- Whole decoded audio and the same file streamed in small blocks give identical results.
"""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import scipy.signal
import soundfile as sf
from onnx import numpy_helper

from model_store import ModelStore
from soundscape.audio import AudioStream, Frontend, FrontendConfig, decode
from soundscape.inference import Engine
from tests.utils.models import make_store, tiny_frontend


# -- an independent log-mel ---------------------------------------------------------------------------
def slaney_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mel per 200 Hz) below 1 kHz, logarithmic (27 mel per factor 6.4) above."""
    f = np.asarray(f, dtype=np.float64)
    return np.where(f < 1000.0, 3.0 * f / 200.0, 15.0 + 27.0 * np.log(np.maximum(f, 1e-9) / 1000.0) / np.log(6.4))


def slaney_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m < 15.0, 200.0 * m / 3.0, 1000.0 * 6.4 ** ((m - 15.0) / 27.0))


def htk_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def htk_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def filters(cfg: FrontendConfig) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` triangles between mel-spaced edges; Slaney norm divides by bandwidth / 2."""
    to_mel, to_hz = (slaney_mel, slaney_hz) if cfg.mel_scale == "slaney" else (htk_mel, htk_hz)
    edges = to_hz(np.linspace(to_mel(cfg.fmin), to_mel(cfg.fmax), cfg.n_mels + 2))
    freqs = np.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    out = np.zeros((cfg.n_mels, len(freqs)))
    for m in range(cfg.n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (freqs - lo) / (mid - lo)
        falling = (hi - freqs) / (hi - mid)
        out[m] = np.clip(np.minimum(rising, falling), 0, None)
        if cfg.mel_norm == "slaney":
            out[m] *= 2.0 / (hi - lo)
    return out


def reference_log_mel(x: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """One window's normalised log-mel image, float64."""
    n_fft, hop = cfg.n_fft, cfg.hop_length
    pad = n_fft // 2
    padded = np.concatenate([x[pad:0:-1], x, x[-2 : -pad - 2 : -1]]).astype(np.float64)  # reflect
    n_frames = 1 + len(x) // hop
    frames = np.stack([padded[i * hop : i * hop + n_fft] for i in range(n_frames)])
    window = scipy.signal.get_window("hann", n_fft, fftbins=True)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** cfg.power
    mel = filters(cfg) @ power.T  # (n_mels, frames)
    db = 10.0 * np.log10(np.maximum(mel, cfg.amin))
    if cfg.top_db is not None:
        db = np.maximum(db, db.max() - cfg.top_db)
    if cfg.normalize == "standard":
        return (db - db.mean()) / max(db.std(), cfg.norm_eps)
    if cfg.normalize == "minmax":
        return (db - db.min()) / max(db.max() - db.min(), cfg.norm_eps)
    return db


def test_reference_filters_match_published_values():
    """The reference's own scale, checked against textbook numbers before it judges anything."""
    assert slaney_mel(1000.0) == pytest.approx(15.0) and slaney_mel(6400.0) == pytest.approx(42.0)
    assert htk_mel(700.0) == pytest.approx(2595.0 * np.log10(2.0))
    np.testing.assert_allclose(slaney_hz(slaney_mel([50.0, 999.0, 4321.0])), [50.0, 999.0, 4321.0])


SIGNALS = {
    "noise": lambda t, rng: 0.1 * rng.standard_normal(len(t)),
    "two_tones": lambda t, rng: 0.3 * np.sin(2 * np.pi * 1000 * t) + 0.05 * np.sin(2 * np.pi * 4321 * t),
    "chirp": lambda t, rng: 0.5 * scipy.signal.chirp(t, 200, t[-1], 7000),
    "clicks": lambda t, rng: (rng.random(len(t)) > 0.999) * 0.8 + 0.001 * rng.standard_normal(len(t)),
}


@pytest.mark.parametrize("config", [
    {},
    {"mel_scale": "htk", "mel_norm": None},
    {"normalize": "minmax"},
    {"n_fft": 1024, "hop_length": 320, "n_mels": 64},
    {"sample_rate": 16000, "fmax": 8000, "n_mels": 32, "n_fft": 512, "hop_length": 256},
], ids=["defaults", "htk", "minmax", "nfft1024", "tiny"])
def test_front_end_equals_a_direct_mel_computation(config):
    cfg = FrontendConfig(**config)
    rng = np.random.default_rng(3)
    t = np.arange(cfg.window_samples) / cfg.sample_rate
    batch = np.stack([f(t, rng) for f in SIGNALS.values()]).astype(np.float32)
    ours = Frontend(cfg)(batch)
    for i, name in enumerate(SIGNALS):
        want = reference_log_mel(batch[i].astype(np.float64), cfg)
        assert ours[i].shape == want.shape == (cfg.n_mels, cfg.n_frames)
        diff = float(np.abs(ours[i] - want).max())
        assert diff <= 5e-4, f"{name}: max abs difference {diff:.2e} (measured <= 7e-5; a symmetric Hann: 6e-3)"


# -- the model, in numpy -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline-store") / "store"
    make_store(root)
    model = ModelStore(root).load("birds")
    graph = onnx.load_from_string(model.onnx_bytes).graph
    weights = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}
    return model, weights["W"], weights["B"]


def forward(images: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The tiny graph: mean over time -> (n, n_mels) -> @ W + B -> logistic."""
    pooled = images.astype(np.float64).mean(axis=-1)
    return 1.0 / (1.0 + np.exp(-(pooled @ w + b)))


def recording(seconds: float, sr: int) -> np.ndarray:
    rng = np.random.default_rng(11)
    t = np.arange(int(seconds * sr)) / sr
    return (0.05 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * (600 + 150 * np.floor(t / 4)) * t)
            * (np.sin(t) > 0)).astype(np.float32)


def test_probabilities_equal_an_independent_forward_pass(tiny_model):
    model, w, b = tiny_model
    engine = Engine(model)
    cfg = tiny_frontend()
    x = recording(23.0, cfg.sample_rate)
    pred = engine.predict(x, hop_s=2.5)
    # full windows start at 0 ... 17.5 s; the one at 20 s holds 3 s (>= min_partial_s 2.5): kept, zero-padded
    np.testing.assert_allclose(pred.starts_s, [0, 2.5, 5, 7.5, 10, 12.5, 15, 17.5, 20])
    windows = np.zeros((len(pred), cfg.window_samples))
    for i, s in enumerate(pred.starts_s):
        chunk = x[int(round(s * cfg.sample_rate)) : int(round(s * cfg.sample_rate)) + cfg.window_samples]
        windows[i, : len(chunk)] = chunk
    images = np.stack([reference_log_mel(win, cfg) for win in windows])
    want = forward(images, w, b)
    np.testing.assert_allclose(pred.probabilities, want, atol=2e-5)
    assert np.ptp(want, axis=0).min() > 0.01  # the windows differ: a shuffled or repeated window would show
    # the model alone, on our own images: float32 ONNX vs float64 numpy
    ours = Frontend(cfg)(windows.astype(np.float32))
    np.testing.assert_allclose(engine.run(ours)[0], forward(ours, w, b), atol=1e-6)


@pytest.mark.parametrize("hop", [5.0, 2.5, 1.0])
def test_whole_and_streamed_audio_give_identical_predictions(tiny_model, hop):
    model, _, _ = tiny_model
    engine = Engine(model)
    buf = io.BytesIO()
    sf.write(buf, recording(31.3, 44100), 44100, format="FLAC")
    data = buf.getvalue()
    whole = engine.predict(decode(data, sample_rate=16000), hop_s=hop, embeddings=True)
    streamed = engine.predict(AudioStream(data, sample_rate=16000, block_s=0.7), hop_s=hop, embeddings=True,
                              batch_size=3)
    np.testing.assert_array_equal(streamed.starts_s, whole.starts_s)
    np.testing.assert_array_equal(streamed.probabilities, whole.probabilities)
    np.testing.assert_array_equal(streamed.embeddings, whole.embeddings)
    assert streamed.audio == whole.audio and whole.audio.sample_rate == 44100
    assert whole.audio.duration_s == pytest.approx(31.3, abs=1e-4)
