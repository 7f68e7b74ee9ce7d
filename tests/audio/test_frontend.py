"""Windowing policy and parity of the serving front end (numpy) with the training one (torchaudio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy
import scipy.signal

from soundscape.audio import Frontend, FrontendConfig, decode

SCIPY_DATA = Path(scipy.__file__).parent / "io" / "tests" / "data"
SR = 32000


# -- windowing -------------------------------------------------------------------------------------------


def test_sixty_seconds_give_twelve_windows_ending_5_to_60():
    fe = Frontend(FrontendConfig())
    w = fe.windows(np.zeros(60 * SR, np.float32))
    assert w.samples.shape == (12, 5 * SR)
    np.testing.assert_allclose(w.ends_s, np.arange(5, 61, 5))


def test_window_boundaries_are_sample_exact():
    fe = Frontend(FrontendConfig())
    ramp = np.arange(60 * SR, dtype=np.float32)
    w = fe.windows(ramp)
    for i in range(12):
        assert w.samples[i, 0] == i * 5 * SR and w.samples[i, -1] == (i + 1) * 5 * SR - 1


def test_overlapping_hop():
    fe = Frontend(FrontendConfig())
    ramp = np.arange(20 * SR, dtype=np.float32)
    w = fe.windows(ramp, hop_s=2.5)
    # Full windows start at 0 ... 15 s; the one at 17.5 s holds 2.5 s (= min_partial_s): kept, padded.
    np.testing.assert_allclose(w.starts_s, [0, 2.5, 5, 7.5, 10, 12.5, 15, 17.5])
    assert w.samples[1, 0] == 2.5 * SR and w.samples[-2, -1] == 20 * SR - 1
    assert w.samples[-1, int(2.5 * SR) - 1] == 20 * SR - 1 and not w.samples[-1, int(2.5 * SR):].any()


@pytest.mark.parametrize(("seconds", "n", "last_valid"), [(62.4, 12, None), (62.5, 13, 2.5), (64.0, 13, 4.0)])
def test_partial_last_window_kept_from_min_partial_s(seconds, n, last_valid):
    fe = Frontend(FrontendConfig(min_partial_s=2.5))
    w = fe.windows(np.ones(int(round(seconds * SR)), np.float32))
    assert len(w) == n
    if last_valid is not None:
        valid = int(round(last_valid * SR))
        assert w.samples[-1, :valid].all() and not w.samples[-1, valid:].any()  # zero-padded tail


def test_min_partial_zero_keeps_any_remainder_and_window_s_drops_it():
    x = np.ones(int(60.1 * SR), np.float32)
    assert len(Frontend(FrontendConfig(min_partial_s=0)).windows(x)) == 13
    assert len(Frontend(FrontendConfig(min_partial_s=5)).windows(x)) == 12


@pytest.mark.parametrize("seconds", [0.001, 1.0, 4.99])
def test_shorter_than_one_window_gives_one_padded_window(seconds):
    n = int(round(seconds * SR))
    w = Frontend(FrontendConfig()).windows(np.ones(n, np.float32))
    assert w.samples.shape == (1, 5 * SR) and w.starts_s.tolist() == [0.0]
    assert w.samples[0, :n].all() and not w.samples[0, n:].any()


def test_windows_refuse_audio_at_the_wrong_rate(tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(ValueError, match="16000 Hz"):
        Frontend(FrontendConfig()).windows(decode(tmp_path / "a.wav"))


# -- images and parity with torchaudio ---------------------------------------------------------------------


def test_one_minute_at_defaults_gives_12_by_128_by_313():
    fe = Frontend(FrontendConfig())
    images = fe(fe.windows(np.random.default_rng(0).standard_normal(60 * SR).astype(np.float32)).samples)
    assert images.shape == (12, 128, 313) and images.dtype == np.float32 and images.flags.c_contiguous
    np.testing.assert_allclose(images.mean(axis=(1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(images.std(axis=(1, 2)), 1, atol=1e-3)


def test_front_end_rejects_wrong_window_length():
    with pytest.raises(ValueError, match="expected windows"):
        Frontend(FrontendConfig())(np.zeros((2, 1000), np.float32))


def signals(sr: int, n: int) -> dict[str, np.ndarray]:
    """Random noise, silence, tones, a chirp and real audio (scipy fixtures resampled), ``(n,)`` each."""
    rng = np.random.default_rng(42)
    t = np.arange(n) / sr
    real = [decode(SCIPY_DATA / f, sample_rate=sr).samples for f in
            ("test-44100Hz-le-1ch-4bytes.wav", "test-44100Hz-2ch-32bit-float-le.wav",
             "test-8000Hz-le-2ch-1byteu.wav")]
    real_audio = np.resize(np.concatenate(real), n)  # tiled to the window length
    return {
        "noise": (0.1 * rng.standard_normal(n)).astype(np.float32),
        "silence": np.zeros(n, np.float32),
        "tones": (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.1 * np.sin(2 * np.pi * 4321 * t)).astype(np.float32),
        "chirp": (0.5 * scipy.signal.chirp(t, 200, t[-1], min(sr / 2 - 500, 14000))).astype(np.float32),
        "real": real_audio.astype(np.float32),
        "quiet_noise": (1e-4 * rng.standard_normal(n)).astype(np.float32),
    }


CONFIGS = {
    "defaults": {},
    "htk_nonorm": dict(mel_scale="htk", mel_norm=None),
    "minmax": dict(normalize="minmax"),
    "none_no_topdb": dict(normalize="none", top_db=None),
    "nfft1024": dict(n_fft=1024, hop_length=320, n_mels=64),
    "no_topdb_standard": dict(top_db=None),
    # power=1 is a magnitude: 10*log10 of it spans half the dB, so top_db=40 keeps the same 80 dB of power.
    "win_length_1600_power1": dict(win_length=1600, power=1.0, sample_rate=16000, fmax=8000, n_mels=64,
                                   top_db=40.0),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_numpy_and_torchaudio_front_ends_agree(name):
    torch = pytest.importorskip("torch", reason="parity needs the [train] extra (torch, torchaudio)")
    from soundscape.audio.transforms import LogMelSpectrogram

    cfg = FrontendConfig(**CONFIGS[name])
    sig = signals(cfg.sample_rate, cfg.window_samples)
    batch = np.stack(list(sig.values()))
    ours = Frontend(cfg, workers=2)(batch)
    theirs = LogMelSpectrogram(cfg)(torch.from_numpy(batch))[:, 0].numpy()
    assert ours.shape == theirs.shape == (len(sig), cfg.n_mels, cfg.n_frames)
    for i, key in enumerate(sig):
        if cfg.top_db is None and key in ("tones", "chirp", "real"):
            # Without a dB floor, bins 150+ dB below the peak of a tone, chirp or the (tonal) scipy fixtures
            # hold float32 FFT rounding noise (both sides compute in float32): not comparable.
            continue
        # Without normalisation the image is in dB: compare relative to its 80+ dB range.
        scale = 1.0 if cfg.normalize != "none" else max(1.0, float(np.abs(theirs[i]).max()) / 100)
        diff = float(np.abs(ours[i] - theirs[i]).max()) / scale
        assert diff <= 1e-3, f"{name}/{key}: max abs difference {diff:.2e}"


def test_workers_give_identical_images():
    x = np.random.default_rng(1).standard_normal((5, 5 * SR)).astype(np.float32)
    np.testing.assert_array_equal(Frontend(FrontendConfig(), workers=1)(x), Frontend(FrontendConfig(), workers=3)(x))
    with pytest.raises(ValueError, match="workers"):
        Frontend(FrontendConfig(), workers=0)
