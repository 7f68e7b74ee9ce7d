"""The pseudo-soundscape builder: each window's labels are exactly the species audible in it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from soundscape.propagation import SNR_BAND_HZ
from training.pseudo_soundscapes import (
    PseudoSoundscapeConfig,
    bed_windows,
    build_pseudo_soundscapes,
    generated_beds,
    loudest_segment,
    split_unlabelled,
)

RATE = 16000
LENGTH = 5 * RATE
TONES = (1500.0, 2500.0, 4000.0, 6000.0)  # one steady tone per species: easy to find again in a spectrum


def _tone_clip(freq: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.sin(2 * np.pi * freq * t + rng.uniform(0, 6)) + 0.001 * rng.standard_normal(len(t))


def _audible(window: np.ndarray) -> set[int]:
    """Species whose tone stands > 20 dB above the median of its 0.25-s frame's spectrum in some frame
    (measured independently of the builder)."""
    freqs, _, z = scipy.signal.stft(window, RATE, nperseg=4096)
    power = np.abs(z) ** 2
    floor = np.median(power[(freqs > SNR_BAND_HZ[0]) & (freqs < 7000)], axis=0)
    return {k for k, f in enumerate(TONES) if (power[np.abs(freqs - f) < 4].max(0) > 100 * floor).any()}


@pytest.fixture(scope="module")
def built():
    rng = np.random.default_rng(0)
    sources = [_tone_clip(f, rng.uniform(2.0, 6.0), rng) for f in TONES for _ in range(2)]
    labels = [k for k in range(len(TONES)) for _ in range(2)]
    beds = (0.01 * rng.standard_normal((6, LENGTH))).astype(np.float32)
    cfg = PseudoSoundscapeConfig(n_windows=200)
    return build_pseudo_soundscapes(sources, labels, len(TONES), beds, RATE, LENGTH, cfg, seed=3)


def test_each_windows_labels_are_the_species_placed_in_it(built):
    assert built.windows.shape == (200, LENGTH) and built.targets.shape == (200, len(TONES))
    for w in range(200):
        placed = {p.species for p in built.placements if p.window == w}
        assert set(np.flatnonzero(built.targets[w])) == placed
        assert _audible(built.windows[w]) == placed, w


def test_windows_look_like_the_field_profile(built):
    counts = built.targets.sum(1)
    assert 0.25 < (counts == 0).mean() < 0.45  # 35 % empty windows by default
    assert counts.max() <= 4 and (counts >= 2).any()
    snrs = [p.snr_db for p in built.placements]
    assert min(snrs) >= -6 and max(snrs) <= 12 and np.ptp(snrs) > 10
    for p in built.placements:  # distance tied to SNR, reverberation in the site range
        assert 10 <= p.path.distance_m <= 300 and 0.3 <= p.path.rt60_s <= 1.2
    far = [p.path.lowpass_hz for p in built.placements if p.snr_db < -3]
    near = [p.path.lowpass_hz for p in built.placements if p.snr_db > 9]
    assert max(far) < min(near)


def test_the_set_is_a_pure_function_of_its_inputs_and_seed(built):
    rng = np.random.default_rng(0)
    sources = [_tone_clip(f, rng.uniform(2.0, 6.0), rng) for f in TONES for _ in range(2)]
    labels = [k for k in range(len(TONES)) for _ in range(2)]
    beds = (0.01 * rng.standard_normal((6, LENGTH))).astype(np.float32)
    cfg = PseudoSoundscapeConfig(n_windows=200)
    again = build_pseudo_soundscapes(sources, labels, len(TONES), beds, RATE, LENGTH, cfg, seed=3)
    assert np.array_equal(again.windows, built.windows) and np.array_equal(again.targets, built.targets)
    other = build_pseudo_soundscapes(sources, labels, len(TONES), beds, RATE, LENGTH, cfg, seed=4)
    assert not np.array_equal(other.targets, built.targets)


def test_loudest_segment_finds_a_call_at_the_end_of_a_clip():
    rng = np.random.default_rng(1)
    clip = 0.001 * rng.standard_normal(8 * RATE)
    clip[6 * RATE : 7 * RATE] += _tone_clip(3000.0, 1.0, rng)
    seg = loudest_segment(clip, RATE, 2 * RATE)
    assert len(seg) == 2 * RATE and np.abs(seg).max() > 0.5
    short = loudest_segment(clip[: RATE], RATE, 2 * RATE)
    assert len(short) == RATE


def test_beds_are_the_quietest_windows_and_generated_beds_are_noise():
    rng = np.random.default_rng(2)
    rec = 0.01 * rng.standard_normal(10 * LENGTH)
    loud = [1, 4, 5, 8]
    for w in loud:  # bird song in four of the ten windows
        rec[w * LENGTH : (w + 1) * LENGTH] += 0.5 * _tone_clip(3000.0, 5.0, rng)
    beds = bed_windows([rec, rec[: LENGTH // 2]], RATE, LENGTH, quiet_fraction=0.3)
    assert beds.shape == (3, LENGTH)  # 30 % of 10 windows; the half-window recording gives none
    assert all(np.abs(b).max() < 0.1 for b in beds)
    gen = generated_beds(4, RATE, LENGTH, np.random.default_rng(0))
    rms_db = 20 * np.log10(np.sqrt((gen.astype(np.float64) ** 2).mean(1)))
    assert gen.shape == (4, LENGTH) and np.all((rms_db > -31) & (rms_db < -19))


def test_bad_inputs_are_refused_with_a_reason():
    beds = np.zeros((1, LENGTH), np.float32)
    with pytest.raises(ValueError, match="one label each"):
        build_pseudo_soundscapes([np.ones(10)], [], 1, beds, RATE, LENGTH, PseudoSoundscapeConfig())
    with pytest.raises(ValueError, match="bed windows"):
        build_pseudo_soundscapes([np.ones(10)], [0], 1, beds[:, :10], RATE, LENGTH, PseudoSoundscapeConfig())
    with pytest.raises(ValueError, match="summing to 1"):
        PseudoSoundscapeConfig(species_per_window=(0.5, 0.2))


def test_validation_bed_recordings_are_never_training_recordings():
    files = [Path(f"site/rec_{i:02d}.flac") for i in range(10)]
    val, train = split_unlabelled(files[::-1])  # any order in, sorted split out
    assert val == [files[0], files[4], files[8]] and not set(val) & set(train)
    assert sorted(val + train) == files
    assert split_unlabelled(files[:1]) == ([files[0]], [files[0]])  # one recording: shared (and logged)
