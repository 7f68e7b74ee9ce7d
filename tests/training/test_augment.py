"""Each augmentation: shapes, what it does to the signal or labels, and determinism with a seed."""

import numpy as np
import pytest
import torch

from training import AugmentConfig, Augmenter
from training.augment import colored_noise, cutmix, mix_at_snr, mixup, pitch_shift, snr_db

RATE = 16000
N = 5 * RATE
Y2 = torch.eye(2)


def tone(freq: float, n: int = N, rate: int = RATE) -> torch.Tensor:
    return torch.sin(2 * torch.pi * freq * torch.arange(n) / rate)


def peak_hz(x: torch.Tensor, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x.numpy()))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def only(**on) -> AugmentConfig:
    """Every step off except the given ones."""
    return AugmentConfig.off().model_copy(update=on)


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
def test_noise_reaches_the_requested_snr(color):
    aug = Augmenter(only(noise_p=1.0, noise_colors=[color], noise_snr_db=(7.0, 7.0)), RATE, seed=0)
    clean = torch.stack([tone(1000), 0.1 * tone(3000)])
    noisy, _ = aug.waveform(clean, torch.eye(2))
    assert noisy.shape == clean.shape
    assert torch.allclose(snr_db(clean, noisy - clean), torch.tensor(7.0), atol=0.01)


def test_noise_colours_have_their_spectral_slope():
    g = torch.Generator().manual_seed(0)
    for color, slope in (("white", 0.0), ("pink", -1.0), ("brown", -2.0)):
        power = torch.fft.rfft(colored_noise((8, 2**15), color, g)).abs().pow(2).mean(0)
        f = torch.fft.rfftfreq(2**15)
        band = (f > 0.005) & (f < 0.4)
        fit = np.polyfit(np.log(f[band].numpy()), np.log(power[band].numpy()), 1)[0]
        assert fit == pytest.approx(slope, abs=0.1)


def test_background_mixing_snr_and_silence():
    background = np.random.default_rng(0).standard_normal(3 * N).astype(np.float32)
    aug = Augmenter(only(background_p=1.0, background_snr_db=(3.0, 3.0)), RATE, [background], seed=1)
    clean = torch.stack([tone(800), torch.zeros(N)])
    mixed, _ = aug.waveform(clean, torch.eye(2))
    assert snr_db(clean[:1], mixed[:1] - clean[:1]).item() == pytest.approx(3.0, abs=0.01)
    assert torch.equal(mixed[1], clean[1])  # silence has no SNR: left alone, no NaN
    assert torch.equal(mix_at_snr(clean, torch.zeros_like(clean), torch.zeros(2)), clean)


def test_time_shift_gain_speed_and_pitch():
    x = torch.stack([tone(1000), tone(2000)])
    shifted = Augmenter(only(shift_p=1.0, shift_max_s=1.0), RATE, seed=0).waveform(x, Y2)[0]
    assert torch.allclose(shifted.pow(2).sum(1), x.pow(2).sum(1))  # circular: nothing lost
    assert not torch.equal(shifted, x)
    loud = Augmenter(only(gain_p=1.0, gain_db=(6.0, 6.0)), RATE, seed=0).waveform(x, Y2)[0]
    assert torch.allclose(loud, x * 10 ** (6 / 20), atol=1e-5)
    fast = Augmenter(only(speed_p=1.0, speed_range=(1.1, 1.1)), RATE, seed=0).waveform(x, Y2)[0]
    assert fast.shape == x.shape and peak_hz(fast[0, : N // 2]) == pytest.approx(1100, abs=3)
    up = pitch_shift(x, 2.0)
    assert up.shape == x.shape
    assert peak_hz(up[0]) == pytest.approx(1000 * 2 ** (2 / 12), abs=2)
    assert peak_hz(up[1]) == pytest.approx(2000 * 2 ** (2 / 12), abs=3)
    # tempo kept: a burst stays where it was
    burst = torch.zeros(N)
    burst[RATE : 2 * RATE] = tone(1000, RATE)
    moved = pitch_shift(burst[None], -2.0)[0].abs()
    assert moved[RATE + 2000 : 2 * RATE - 2000].mean() > 10 * moved[3 * RATE :].mean()


def test_specaugment_masks_bands():
    images = torch.ones(4, 1, 32, 64)
    aug = Augmenter(only(freq_mask_p=1.0, freq_mask_param=8, time_mask_p=1.0, time_mask_param=10), RATE, seed=0)
    out, y = aug.spectrogram(images, torch.eye(4))
    assert out.shape == images.shape and torch.equal(y, torch.eye(4))
    zero_rows = (out[:, 0] == 0).all(dim=2).sum(dim=1)  # fully masked mel bands per image
    zero_cols = (out[:, 0] == 0).all(dim=1).sum(dim=1)
    assert (zero_rows > 0).any() and (zero_cols > 0).any()
    assert (zero_rows <= 2 * 8).all() and (zero_cols <= 2 * 10).all()


def test_mixup_targets_union_and_weighted():
    images = torch.stack([torch.full((1, 4, 6), v) for v in (0.0, 1.0)])
    y = torch.tensor([[1.0, 0.0], [0.0, 0.5]])
    perm = torch.tensor([1, 0])
    mixed, union = mixup(images, y, 0.7, perm, "union")
    assert torch.allclose(mixed[0], torch.full((1, 4, 6), 0.3))
    assert torch.equal(union, torch.tensor([[1.0, 0.5], [1.0, 0.5]]))
    _, weighted = mixup(images, y, 0.7, perm, "weighted")
    assert torch.allclose(weighted[0], torch.tensor([0.7, 0.15]))


def test_cutmix_is_area_weighted():
    images = torch.stack([torch.zeros(1, 4, 10), torch.ones(1, 4, 10)])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out, targets = cutmix(images, y, start=2, width=3, perm=torch.tensor([1, 0]))
    assert out[0, 0, :, 2:5].eq(1).all() and out[0, 0, :, :2].eq(0).all() and out[0, 0, :, 5:].eq(0).all()
    assert torch.allclose(targets[0], torch.tensor([0.7, 0.3]))
    with pytest.raises(ValueError, match="outside"):
        cutmix(images, y, start=8, width=3, perm=torch.tensor([1, 0]))


def test_full_recipe_is_deterministic_with_a_seed():
    background = np.random.default_rng(0).standard_normal(2 * N).astype(np.float32)
    cfg = AugmentConfig(noise_p=0.8, background_p=0.8, speed_p=0.5, pitch_p=0.5, mixup_p=1.0, cutmix_p=1.0)
    x = torch.stack([tone(f) for f in (500, 900, 1500, 2500)])
    images, y = torch.randn(4, 1, 32, 64), torch.eye(4)

    def run(seed):
        aug = Augmenter(cfg, RATE, [background], seed=seed)
        return *aug.waveform(x, y), *aug.spectrogram(images, y)

    a, b, c = run(5), run(5), run(6)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    # a saved state replays the same draws
    aug = Augmenter(cfg, RATE, [background], seed=5)
    state = aug.state_dict()
    first = aug.waveform(x, y)
    aug.load_state_dict(state)
    assert all(torch.equal(p, q) for p, q in zip(aug.waveform(x, y), first, strict=True))


def test_off_config_changes_nothing():
    assert not AugmentConfig.off().enabled and AugmentConfig().enabled
    aug = Augmenter(AugmentConfig.off(), RATE, seed=0)
    x = torch.randn(3, N)
    waves, targets = aug.waveform(x, torch.eye(3))
    assert torch.equal(waves, x) and torch.equal(targets, torch.eye(3))
    with pytest.raises(ValueError, match="noise_snr_db"):
        AugmentConfig(noise_snr_db=(10.0, 3.0))
