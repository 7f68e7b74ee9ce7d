"""Each augmentation: shapes, what it does to the signal or labels, and determinism with a seed."""

import numpy as np
import pytest
import scipy.signal
import torch

from soundscape.propagation import active_mask, band_snr_db, drr_for_distance, rt60_of_ir
from tests.training.conftest import call, fast_config
from training import AugmentConfig, Augmenter
from training.augment import biquad, colored_noise, cutmix, load_beds, mix_at_snr, mixup, pitch_shift, snr_db
from training.data import AudioCache, CachedStretch, ProblemReport, list_audio_files
from training.validation import quiet_windows

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


def band_energy(x: np.ndarray, rate: int, lo: float, hi: float) -> float:
    f = np.fft.rfftfreq(x.shape[-1], 1 / rate)
    return float((np.abs(np.fft.rfft(x, axis=-1)) ** 2)[..., (f >= lo) & (f < hi)].sum())


@pytest.mark.parametrize("snr", [-10.0, 15.0])
def test_bed_mixing_reaches_the_band_snr_of_the_pseudo_soundscapes(snr):
    rng = np.random.default_rng(0)
    bed = np.cumsum(rng.standard_normal(3 * N)).astype(np.float32)  # brown: most power below the band
    bed = (bed - np.convolve(bed, np.ones(400) / 400, "same")).astype(np.float32)
    aug = Augmenter(only(background_p=1.0, background_snr_db=(snr, snr)), RATE, [bed], seed=1)
    clean = torch.stack([torch.from_numpy(call(3000, 5.0, RATE, rng)), torch.zeros(N)])
    mixed, y = aug.waveform(clean, torch.eye(2))
    c = clean[0].double().numpy()
    measured = band_snr_db(c, mixed[0].double().numpy() - c, RATE, active_mask(c, RATE))
    assert measured == pytest.approx(snr, abs=0.5)
    assert torch.equal(mixed[1], clean[1]) and torch.equal(y, torch.eye(2))  # silence has no SNR: left alone
    assert torch.equal(mix_at_snr(clean, torch.zeros_like(clean), torch.zeros(2)), clean)


def test_a_bed_with_a_target_adds_it_and_a_bed_without_does_not():
    beds = [np.random.default_rng(0).standard_normal(N).astype(np.float32)]
    x = torch.stack([tone(1500), tone(2500), tone(3500)])
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.5, 0.9]])
    _, out = Augmenter(only(background_p=1.0), RATE, beds, np.array([[0.0, 0.3, 0.7]]), seed=0).waveform(x, y)
    assert torch.equal(out, torch.tensor([[1.0, 0.3, 0.7], [0.0, 1.0, 0.7], [0.0, 0.5, 0.9]]))  # max, not sum
    mixed, out = Augmenter(only(background_p=1.0), RATE, beds, seed=0).waveform(x, y)
    assert torch.equal(out, y) and not torch.equal(mixed, x)
    with pytest.raises(ValueError, match="bed target rows"):
        Augmenter(only(background_p=1.0), RATE, beds, np.zeros((2, 3)))


def test_beds_come_from_backgrounds_and_the_quietest_unlabelled_windows(tiny_data, tmp_path):
    cfg = fast_config(tiny_data, tmp_path / "run", unlabelled_dir=tiny_data / "soundscapes")
    cache = AudioCache(tmp_path / "cache", cfg.frontend.sample_rate)
    beds = load_beds(cfg, cache, ProblemReport())
    assert len(beds) == 2 + 1  # two backgrounds; the 20 s soundscape has 4 windows, the quietest 30 % -> 1
    assert len(beds[2]) == cfg.frontend.window_samples
    assert len(load_beds(cfg.model_copy(update={"augment": only(background_p=0.5, unlabelled_beds=False)}), cache,
                         ProblemReport())) == 2
    assert load_beds(cfg.model_copy(update={"augment": only()}), cache, ProblemReport()) == []


def _mapped(path) -> bool:
    return str(path) in open("/proc/self/maps").read()


def test_beds_are_read_from_the_cache_when_used_and_mix_as_held_arrays_do(tiny_data, tmp_path):
    cfg = fast_config(tiny_data, tmp_path / "run", unlabelled_dir=tiny_data / "soundscapes")
    cache = AudioCache(tmp_path / "cache", cfg.frontend.sample_rate)
    beds = load_beds(cfg, cache, ProblemReport())
    assert all(isinstance(b, CachedStretch) for b in beds)  # referenced, not held
    quiet, _ = quiet_windows(list_audio_files(tiny_data / "soundscapes"), cache, ProblemReport(),
                             cfg.frontend.window_samples, cfg.pseudo.bed_quiet_fraction)
    np.testing.assert_array_equal(beds[2].samples(), quiet[0])
    held = [np.array(b.samples()) for b in beds]
    x = torch.stack([tone(1500 + 500 * i) for i in range(6)])
    y = torch.eye(6)[:, :3]
    step = only(background_p=1.0, background_snr_db=(0.0, 10.0))
    referenced, _ = Augmenter(step, RATE, beds, seed=4).waveform(x, y)
    assert torch.equal(referenced, Augmenter(step, RATE, held, seed=4).waveform(x, y)[0])
    assert not any(_mapped(cache.path_for(b.file)) for b in beds)  # no page of a bed stays mapped after use


def test_reverberation_has_an_rt60_in_the_configured_range():
    rate = 32000
    impulses = torch.zeros(6, 2 * rate)
    impulses[:, 0] = 1.0
    aug = Augmenter(only(reverb_p=1.0, reverb_rt60_s=(0.4, 0.9)), rate, seed=3)
    out, _ = aug.waveform(impulses, torch.eye(6))
    rt60s = [rt60_of_ir(row.double().numpy(), rate) for row in out]  # the output of an impulse is the response
    assert all(0.4 * 0.9 < r < 0.9 * 1.1 for r in rt60s), rt60s
    assert max(rt60s) - min(rt60s) > 0.1  # drawn per sample
    direct, tail = out[:, 0].double() ** 2, out[:, 1:].double().pow(2).sum(1)
    drr = 10 * torch.log10(direct / tail)
    assert ((drr > drr_for_distance(300) - 0.1) & (drr < drr_for_distance(10) + 0.1)).all()  # tied to 10-300 m
    fixed = Augmenter(only(reverb_p=1.0, reverb_drr_from_distance=False, reverb_drr_db=(3.0, 3.0)), rate, seed=0)
    out, _ = fixed.waveform(impulses, torch.eye(6))
    assert torch.allclose(10 * torch.log10(out[:, 0].double() ** 2 / out[:, 1:].double().pow(2).sum(1)),
                          torch.full((6,), 3.0, dtype=torch.float64), atol=0.01)


def test_distance_low_pass_darkens_far_calls_only():
    rate = 32000
    noise = torch.randn(4, 2 * rate, generator=torch.Generator().manual_seed(0))

    def tilt(x: torch.Tensor) -> float:  # energy above 8 kHz over energy in 1-4 kHz, dB
        x = x.double().numpy()
        return 10 * np.log10(band_energy(x, rate, 8000, 16000) / band_energy(x, rate, 1000, 4000))

    far, _ = Augmenter(only(lowpass_p=1.0, distance_m=(200.0, 300.0)), rate, seed=0).waveform(noise, torch.eye(4))
    near, _ = Augmenter(only(lowpass_p=1.0, distance_m=(10.0, 15.0)), rate, seed=0).waveform(noise, torch.eye(4))
    for i in range(4):
        assert tilt(far[i]) < tilt(noise[i]) - 10
        assert tilt(near[i]) == pytest.approx(tilt(noise[i]), abs=0.5)  # cut-off above the band at 10-15 m


def test_equal_reverb_and_lowpass_probabilities_treat_the_same_samples():
    rate = 32000
    x = torch.randn(40, rate // 2, generator=torch.Generator().manual_seed(1))
    far = {"distance_m": (100.0, 300.0)}  # cut-off inside the band (nearer than 20 m there is no low-pass)
    both, _ = Augmenter(only(reverb_p=0.5, lowpass_p=0.5, **far), rate, seed=0).waveform(x, torch.zeros(40, 1))
    lowpass, _ = Augmenter(only(lowpass_p=0.5, **far), rate, seed=0).waveform(x, torch.zeros(40, 1))
    changed = [not torch.equal(a, b) for a, b in zip(both, x, strict=True)]
    assert changed == [not torch.equal(a, b) for a, b in zip(lowpass, x, strict=True)]
    assert 8 < sum(changed) < 32


def test_multi_clip_mixing_adds_other_species_and_unions_their_targets():
    # orthogonal tones (whole cycles), so each output is a measurable sum of the inputs
    freqs = [500, 700, 900, 1100, 1300, 1700]
    x = torch.stack([tone(f) * a for f, a in zip(freqs, [1.0, 0.5, 2.0, 1.0, 0.3, 1.0], strict=True)]).double()
    y = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0.5], [0, 0, 1.0, 0], [0, 0, 0, 1.0],
                      [0, 0, 0, 0]])  # 0 and 1: two crops of one clip; 2 and 4 share a (secondary) label; 5: nothing
    aug = Augmenter(only(multiclip_p=1.0, multiclip_max=2, multiclip_db=(-6.0, 6.0)), RATE, seed=0)
    out, targets = aug.waveform(x.float(), y)
    coef = (out.double() @ x.T) / (x * x).sum(1)  # coef[i, j]: how much of clip j sample i holds
    assert torch.allclose(coef.diagonal(), torch.ones(6, dtype=torch.float64), atol=1e-4)  # itself, once
    added = (coef - torch.eye(6, dtype=torch.float64)).abs() > 1e-4
    assert added.any(1).all() and not added[:, 5].any()  # an unlabelled sample takes partners, is never one
    energy = (x * x).sum(1)
    for i in range(6):
        partners = torch.nonzero(added[i]).flatten().tolist()
        assert len(partners) <= 2
        for j in partners:
            assert not ((y[i] > 0) & (y[j] > 0)).any(), (i, j)  # never the same species (nor the same clip)
            level = 10 * torch.log10(coef[i, j] ** 2 * energy[j] / energy[i])
            assert -6.01 < level < 6.01
        expected = torch.stack([y[i], *[y[j] for j in partners]]).max(0).values
        assert torch.equal(targets[i], expected), i
    assert not added[0, 1] and not added[1, 0] and not added[2, 4] and not added[4, 2]
    assert torch.equal(aug.waveform(x[:1].float(), y[:1])[0], x[:1].float())  # a batch of one: nothing to add


def test_highpass_and_eq():
    rate = 32000
    x = torch.stack([tone(100, rate, rate), tone(6000, rate, rate)])
    hp, _ = Augmenter(only(highpass_p=1.0, highpass_hz=(1000.0, 1000.0)), rate, seed=0).waveform(x, torch.eye(2))
    settled = slice(rate // 4, None)
    assert 10 * torch.log10(hp[0, settled].pow(2).mean() / x[0, settled].pow(2).mean()) < -35
    assert 10 * torch.log10(hp[1, settled].pow(2).mean() / x[1, settled].pow(2).mean()).abs() < 0.1
    for kind, at, gain in (("peak", 2000.0, 6.0), ("lowshelf", 0.0, -6.0), ("highshelf", rate / 2, 6.0)):
        _, h = scipy.signal.sosfreqz(biquad(kind, 2000.0, gain, 1.5 if kind == "peak" else 0.7071, rate),
                                     worN=[at, rate / 4 if kind == "lowshelf" else 10.0], fs=rate)
        assert 20 * np.log10(abs(h[0])) == pytest.approx(gain, abs=0.01), kind
    assert 20 * np.log10(abs(scipy.signal.sosfreqz(biquad("lowshelf", 500.0, -6, 0.7071, rate), worN=[15000.0],
                                                   fs=rate)[1][0])) == pytest.approx(0.0, abs=0.1)
    noise = torch.randn(3, rate, generator=torch.Generator().manual_seed(0))
    eq, _ = Augmenter(only(eq_p=1.0, eq_filters=2), rate, seed=0).waveform(noise, torch.eye(3))
    f, before = scipy.signal.welch(noise.numpy(), rate, nperseg=1024)
    _, after = scipy.signal.welch(eq.numpy(), rate, nperseg=1024)
    change = 10 * np.log10(after / before)[:, (f > 200) & (f < 14000)]
    assert np.abs(change).max() < 12 + 3 and np.abs(change).max(1).min() > 1  # every sample coloured, <= 2 x 6 dB


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


FAR_FIELD = {"reverb_p": 0.7, "lowpass_p": 0.7, "multiclip_p": 0.7, "background_p": 0.8, "highpass_p": 0.5,
             "eq_p": 0.5}


def test_full_recipe_is_deterministic_with_a_seed():
    background = np.random.default_rng(0).standard_normal(2 * N).astype(np.float32)
    cfg = AugmentConfig(noise_p=0.8, speed_p=0.5, pitch_p=0.5, mixup_p=1.0, cutmix_p=1.0, **FAR_FIELD)
    x = torch.stack([tone(f) for f in (500, 900, 1500, 2500)])
    images, y = torch.randn(4, 1, 32, 64), torch.eye(4)
    bed_targets = np.array([[0.0, 0.0, 0.0, 0.6]], np.float32)

    def run(seed):
        aug = Augmenter(cfg, RATE, [background], bed_targets, seed=seed)
        return *aug.waveform(x, y), *aug.spectrogram(images, y)

    a, b, c = run(5), run(5), run(6)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    # a saved state replays the same draws, the far-field steps included
    aug = Augmenter(cfg, RATE, [background], bed_targets, seed=5)
    aug.waveform(x, y)
    state = aug.state_dict()
    first = aug.waveform(x, y)
    aug.load_state_dict(state)
    assert all(torch.equal(p, q) for p, q in zip(aug.waveform(x, y), first, strict=True))


@pytest.mark.parametrize("step", sorted(FAR_FIELD))
def test_a_step_at_probability_zero_changes_nothing_and_draws_nothing(step):
    background = np.random.default_rng(0).standard_normal(2 * N).astype(np.float32)
    x, y = torch.stack([tone(f) for f in (500, 900, 1500, 2500)]), torch.eye(4)
    far = {"distance_m": (100.0, 300.0)}
    on = Augmenter(only(**{step: 1.0}, **far), RATE, [background], np.ones((1, 4)), seed=0)
    assert not torch.equal(on.waveform(x, y)[0], x)
    off = Augmenter(only(**{step: 0.0}, **far), RATE, [background], np.ones((1, 4)), seed=0)
    before = off.state_dict()["numpy"]
    waves, targets = off.waveform(x, y)
    assert torch.equal(waves, x) and torch.equal(targets, y)  # bit-exact
    assert off.state_dict()["numpy"] == before  # nothing drawn: other steps draw as if it did not exist


def test_off_config_changes_nothing():
    assert not AugmentConfig.off().enabled and AugmentConfig().enabled
    aug = Augmenter(AugmentConfig.off(), RATE, [np.ones(N, np.float32)], np.ones((1, 3)), seed=0)
    x = torch.randn(3, N)
    waves, targets = aug.waveform(x, torch.eye(3))
    assert torch.equal(waves, x) and torch.equal(targets, torch.eye(3))
    with pytest.raises(ValueError, match="noise_snr_db"):
        AugmentConfig(noise_snr_db=(10.0, 3.0))
    with pytest.raises(ValueError, match="reverb_rt60_s"):
        AugmentConfig(reverb_rt60_s=(0.0, 1.0))
