"""The augmentation recipe: waveform steps on 5 s crops, SpecAugment, mixup and cutmix on images.

Every step is switched on by a probability in :class:`~training.config.AugmentConfig` and draws its
randomness from one seeded :class:`Augmenter` (a numpy ``Generator`` for decisions and parameters, a
torch ``Generator`` for noise), so a seed gives the same augmented batches, and the state is saved in
checkpoints for an exact resume. A step whose probability is 0 draws nothing, so switching it off leaves
the other steps' draws (and the batch, when all are off) exactly as they were. Images come only from
:class:`soundscape.audio.transforms.LogMelSpectrogram`.

Waveform steps, in order (the path of a call to a field recorder):

1. the source: time shift (circular), speed (``torchaudio.functional.speed``, tempo and pitch; cropped or
   padded back to the window), pitch shift (tempo kept);
2. the far field, with :mod:`soundscape.propagation` (the model the pseudo-soundscape validation uses): a
   distance drawn log-uniformly in ``distance_m``; **distance low-pass** at ``lowpass_cutoff_hz(d)`` and
   **reverberation** (``propagate``: the low-passed call convolved with ``reverb_ir``, RT60 from
   ``reverb_rt60_s``, DRR ``drr_for_distance(d)`` or drawn), cut back to the window. One uniform number
   per sample decides both (``u < lowpass_p``, ``u < reverb_p``), so equal probabilities treat the same
   samples, like a far call;
3. **multi-clip mixing**: 1..``multiclip_max`` other clips of the batch that share no label with the sample
   (so never the sample itself, nor another crop of the same clip), each at ``multiclip_db`` relative to
   the sample (full-band energy); targets: union (max);
4. **bed mixing**: a random crop of one of the beds (backgrounds and the site's unlabelled recordings,
   :func:`load_beds`) added at an SNR from ``background_snr_db`` measured as the pseudo-soundscapes
   measure it: 1-11 kHz band power over the sample's active frames (``active_mask``, ``gain_for_snr``);
   a bed with a target (``bed_targets``) adds it (max);
5. the recorder: random **high-pass** (2nd-order Butterworth) and random **EQ** (``eq_filters`` biquads,
   each a peaking, low-shelf or high-shelf filter, RBJ cookbook, ``eq_gain_db``), then coloured noise
   (white, pink = 1/f, brown = 1/f^2 power) at a random full-band SNR (``torchaudio.functional.add_noise``,
   which sets the SNR exactly), gain. Gain is mostly undone by the front end's per-window normalisation;
   it matters with ``normalize="none"`` and through ``top_db``.

Steps 2-5 run in numpy/scipy, per selected sample, in place on one CPU copy of the batch (moved back to
its device afterwards): scipy's FFT convolution and IIR filters are several times faster than torch's on
this 2-core CPU (16 reverberations of 5 s at 32 kHz: 21 ms with scipy, 208 ms with ``torch.fft``). At the
default probabilities they cost about 0.3 s of CPU per batch of 32 x 5 s at 32 kHz, half of it the band
SNR of bed mixing (three band-pass filterings per sample), about 0.07 s the reverberation.

Pitch shift: ``torchaudio.functional.pitch_shift`` resamples by ``sample_rate / 2**(n/12)``, a ratio with
no small common divisor at 32 kHz, so its polyphase kernel is huge: about 1.5 s per 5 s clip on this 2-core CPU
(11.8 s for 8 clips at 32 kHz).
:func:`pitch_shift` does the same thing (phase-vocoder time stretch, then resampling) with the resampling
ratio approximated by a fraction of denominator <= 64 (pitch error < 0.01 semitone): 0.24 s for the
same 8 clips, about 50 times faster. One shift is drawn per batch and applied to the selected clips together.

Image steps: SpecAugment (``torchaudio.transforms.FrequencyMasking`` / ``TimeMasking``, independent masks
per image); mixup (per batch; targets ``union`` = element-wise max, or ``weighted`` = ``lam*y1 +
(1-lam)*y2``); cutmix of a full-height time band (per batch; targets area-weighted by the kept fraction).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.signal
import torch
import torchaudio

from soundscape.propagation import (
    Propagation,
    band_signal,
    drr_for_distance,
    gain_for_snr,
    loud_samples,
    lowpass,  # the distance low-pass of the propagation model (one filter for validation and training)
    lowpass_cutoff_hz,
    propagate,
)

from .config import AugmentConfig
from .data import CachedStretch, bed_samples, crop, list_audio_files

if TYPE_CHECKING:
    from .config import TrainConfig
    from .data import AudioCache, ProblemReport

__all__ = ["MAX_TRAINING_BEDS", "Augmenter", "biquad", "colored_noise", "cutmix", "load_beds", "mix_at_snr",
           "mixup", "pitch_shift", "snr_db"]

log = logging.getLogger(__name__)

MAX_TRAINING_BEDS = 512  # unlabelled bed windows kept (5 s at 32 kHz: 330 MB), evenly spread over the list


def colored_noise(shape: tuple[int, int], color: str, generator: torch.Generator) -> torch.Tensor:
    """Unit-variance noise with power spectrum ``1/f**beta`` (white 0, pink 1, brown 2).

    Args:
        shape (tuple): ``(batch, samples)``.
        color (str): ``white``, ``pink`` or ``brown``.
        generator (torch.Generator): CPU generator.

    Returns:
        torch.Tensor: ``(batch, samples)`` float32 on the CPU.
    """
    beta = {"white": 0.0, "pink": 1.0, "brown": 2.0}.get(color)
    if beta is None:
        raise ValueError(f"unknown noise color {color!r}; expected white, pink or brown")
    white = torch.randn(shape, generator=generator)
    if beta == 0:
        return white
    n = shape[-1]
    spec = torch.fft.rfft(white, dim=-1)
    freqs = torch.fft.rfftfreq(n)
    freqs[0] = freqs[1]  # no infinite DC gain
    noise = torch.fft.irfft(spec / freqs.pow(beta / 2), n=n, dim=-1)
    return noise / noise.std(dim=-1, keepdim=True).clamp_min(1e-12)


def snr_db(signal: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``10 log10(energy(signal) / energy(noise))`` per row of ``(batch, samples)``."""
    return 10 * torch.log10(signal.pow(2).sum(-1) / noise.pow(2).sum(-1))


def mix_at_snr(signal: torch.Tensor, noise: torch.Tensor, snr: torch.Tensor) -> torch.Tensor:
    """Add ``noise`` scaled to the given SNR (``torchaudio.functional.add_noise``).

    Rows whose signal or noise is silent are returned unchanged (the SNR is undefined there).

    Args:
        signal (torch.Tensor): ``(batch, samples)``.
        noise (torch.Tensor): ``(batch, samples)``.
        snr (torch.Tensor): ``(batch,)`` dB.
    """
    ok = (signal.pow(2).sum(-1) > 1e-12) & (noise.pow(2).sum(-1) > 1e-12)
    if not ok.any():
        return signal
    out = signal.clone()
    out[ok] = torchaudio.functional.add_noise(signal[ok], noise[ok], snr[ok].to(signal.dtype))
    return out


def _ratio(x: float, max_denominator: int = 64) -> tuple[int, int]:
    f = Fraction(x).limit_denominator(max_denominator)
    return f.numerator, f.denominator


def _fit(x: torch.Tensor, length: int) -> torch.Tensor:
    """Centre-crop or zero-pad ``(batch, n)`` to ``length`` samples."""
    n = x.shape[-1]
    if n >= length:
        start = (n - length) // 2
        return x[..., start : start + length]
    return torch.nn.functional.pad(x, (0, length - n))


def pitch_shift(x: torch.Tensor, semitones: float, *, n_fft: int = 512) -> torch.Tensor:
    """Shift pitch by ``semitones`` keeping the tempo (phase vocoder + rational resampling).

    Args:
        x (torch.Tensor): ``(batch, samples)``.
        semitones (float): shift; positive raises the pitch.
        n_fft (int): STFT size of the phase vocoder. (Default: ``512``)

    Returns:
        torch.Tensor: ``(batch, samples)``, same length.
    """
    if semitones == 0:
        return x
    hop = n_fft // 4
    factor = 2.0 ** (semitones / 12.0)  # frequency multiplier
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop, window=window, return_complex=True)
    phase_advance = torch.linspace(0, math.pi * hop, spec.shape[-2], device=x.device, dtype=x.dtype)[..., None]
    stretched = torchaudio.functional.phase_vocoder(spec, 1.0 / factor, phase_advance)  # factor x longer
    y = torch.istft(stretched, n_fft, hop, window=window, length=int(round(x.shape[-1] * factor)))
    up, down = _ratio(factor)  # resample by 1/factor: back to the original length, pitch x factor
    y = torchaudio.functional.resample(y, orig_freq=up, new_freq=down)
    return _fit(y, x.shape[-1])


def biquad(kind: str, freq_hz: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """One EQ filter as a second-order section (Robert Bristow-Johnson's Audio EQ Cookbook).

    Args:
        kind (str): ``peak``, ``lowshelf`` or ``highshelf``.
        freq_hz (float): centre (peak) or corner (shelf) frequency; below ``sample_rate / 2``.
        gain_db (float): gain at the centre, or of the shelf.
        q (float): quality factor (a shelf with ``q = 1/sqrt(2)`` has no overshoot).
        sample_rate (int): Hz.

    Returns:
        np.ndarray: ``(1, 6)`` ``[b0, b1, b2, 1, a1, a2]`` for ``scipy.signal.sosfilt``.
    """
    a = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * freq_hz / sample_rate
    cos, alpha = math.cos(w0), math.sin(w0) / (2 * q)
    if kind == "peak":
        b = [1 + alpha * a, -2 * cos, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cos, 1 - alpha / a]
    elif kind in ("lowshelf", "highshelf"):
        sign = 1 if kind == "lowshelf" else -1
        root = 2 * math.sqrt(a) * alpha
        b = [a * ((a + 1) - sign * (a - 1) * cos + root), sign * 2 * a * ((a - 1) - sign * (a + 1) * cos),
             a * ((a + 1) - sign * (a - 1) * cos - root)]
        den = [(a + 1) + sign * (a - 1) * cos + root, -sign * 2 * ((a - 1) + sign * (a + 1) * cos),
               (a + 1) + sign * (a - 1) * cos - root]
    else:
        raise ValueError(f"unknown EQ filter {kind!r}; expected peak, lowshelf or highshelf")
    return np.array([[*b, *den]]) / den[0]


EQ_KINDS = ("peak", "lowshelf", "highshelf")


def mixup(images: torch.Tensor, targets: torch.Tensor, lam: float, perm: torch.Tensor,
          targets_mode: str = "union") -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each image with ``images[perm]``: ``lam * a + (1 - lam) * b``.

    Args:
        images (torch.Tensor): ``(batch, 1, n_mels, frames)``.
        targets (torch.Tensor): ``(batch, n_classes)``.
        lam (float): weight of the original image, in [0, 1].
        perm (torch.Tensor): ``(batch,)`` partner indices.
        targets_mode (str): ``union`` (element-wise max) or ``weighted`` (same weights as the images).
    """
    mixed = lam * images + (1 - lam) * images[perm]
    if targets_mode == "union":
        return mixed, torch.maximum(targets, targets[perm])
    if targets_mode == "weighted":
        return mixed, lam * targets + (1 - lam) * targets[perm]
    raise ValueError(f"unknown mixup targets mode {targets_mode!r}; expected union or weighted")


def cutmix(images: torch.Tensor, targets: torch.Tensor, start: int, width: int,
           perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste frames ``[start, start + width)`` of ``images[perm]`` into each image (full height).

    Targets are area-weighted: ``lam * y + (1 - lam) * y[perm]`` with ``lam = 1 - width / frames``.
    """
    frames = images.shape[-1]
    if start < 0 or width < 0 or start + width > frames:
        raise ValueError(f"cutmix band [{start}, {start + width}) is outside [0, {frames})")
    out = images.clone()
    out[..., start : start + width] = images[perm][..., start : start + width]
    lam = 1.0 - width / frames
    return out, lam * targets + (1 - lam) * targets[perm]


def load_beds(cfg: TrainConfig, cache: AudioCache, problems: ProblemReport, *,
              workers: int = 1) -> list[np.ndarray | CachedStretch]:
    """The recordings the bed step mixes clips into (nothing when ``augment.background_p`` is 0), each referenced
    in the decode cache (:class:`~training.data.CachedStretch`), read only when a batch uses it.

    - every usable recording of ``backgrounds_dir`` (call-free noise), whole (a random crop is taken);
    - with ``augment.unlabelled_beds``, windows of the site's own training recordings (``unlabelled_dir``
      less the quarter kept for validation beds: :func:`training.pseudo_soundscapes.split_unlabelled`),
      chosen by the pseudo-soundscape bed rule: the quietest ``pseudo.bed_quiet_fraction`` of each
      recording's windows by 1-11 kHz power (fewest unlabelled birds), from at most ``MAX_BED_RECORDINGS``
      recordings spread over them, at most :data:`MAX_TRAINING_BEDS` windows;
    - with Raven tables, their recordings' stretches with no box (:func:`training.inputs.raven_negatives`).

    Unreadable files go to ``problems``.
    """
    from .inputs import raven_negatives
    from .pseudo_soundscapes import MAX_BED_RECORDINGS, split_unlabelled, spread
    from .validation import quiet_beds

    beds: list[np.ndarray | CachedStretch] = []
    if cfg.augment.background_p <= 0:
        return beds
    if cfg.backgrounds_dir is not None:
        files = list_audio_files(cfg.backgrounds_dir)
        ok = cache.prepare(files, problems, workers=workers, desc="decoding backgrounds")
        beds += [CachedStretch.whole(cache, f) for f, good in zip(files, ok, strict=True) if good]
        if not beds:
            log.warning("no usable background recording in %s", cfg.backgrounds_dir)
    if cfg.unlabelled_dir is not None and cfg.augment.unlabelled_beds:
        _, files = split_unlabelled(list_audio_files(cfg.unlabelled_dir))
        quiet, _ = quiet_beds(spread(files, MAX_BED_RECORDINGS), cache, problems, cfg.frontend.window_samples,
                              cfg.pseudo.bed_quiet_fraction, workers=workers)
        beds += spread(quiet, MAX_TRAINING_BEDS)
    beds += raven_negatives(cfg, cache, problems)  # the unannotated stretches of Raven-annotated recordings
    if not beds:
        log.warning("no bed recording (backgrounds_dir, unlabelled_dir): bed mixing is off")
    return beds


class Augmenter:
    """The seeded augmentation pipeline of one training process.

    Args:
        cfg (AugmentConfig): the recipe.
        sample_rate (int): rate of the waveforms.
        beds (Sequence[np.ndarray | CachedStretch]): recordings ``(n,)`` float32 at ``sample_rate``, held or
            referenced in the decode cache, that the bed step mixes in (a random ``samples``-long crop of one per
            selected sample); see :func:`load_beds`.
        bed_targets (np.ndarray, optional): ``(len(beds), n_classes)`` soft targets of the beds (e.g.
            pseudo-labelled windows): a sample mixed with bed ``j`` gets ``max(target, bed_targets[j])``.
            ``None``: the beds hold no labelled species.
        seed (int): seed of every random draw. (Default: ``0``)

    Example:
        >>> aug = Augmenter(AugmentConfig(), 32000, beds, seed=0)
        >>> waves, targets = aug.waveform(waves, targets)    # (batch, samples), (batch, n_classes)
        >>> images, targets = aug.spectrogram(fe(waves), targets)
    """

    def __init__(self, cfg: AugmentConfig, sample_rate: int, beds: Sequence[np.ndarray | CachedStretch] = (),
                 bed_targets: np.ndarray | None = None, *, seed: int = 0) -> None:
        if bed_targets is not None and len(bed_targets) != len(beds):
            raise ValueError(f"{len(beds)} beds but {len(bed_targets)} bed target rows")
        keep = [i for i, b in enumerate(beds) if len(b)]
        self.cfg = cfg
        self.sample_rate = sample_rate
        self.beds = [beds[i] if isinstance(beds[i], CachedStretch) else np.asarray(beds[i], dtype=np.float32)
                     for i in keep]
        self.bed_targets = None if bed_targets is None else np.asarray(bed_targets, dtype=np.float32)[keep]
        self._numpy_steps = any(p > 0 for p in (cfg.reverb_p, cfg.lowpass_p, cfg.multiclip_p, cfg.background_p,
                                                cfg.highpass_p, cfg.eq_p))
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)

    # -- state, for checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"numpy": self.rng.bit_generator.state, "torch": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["numpy"]
        self.generator.set_state(state["torch"])

    # -- helpers -----------------------------------------------------------------------------------
    def _select(self, batch: int, p: float) -> torch.Tensor:
        """Indices of the samples a step with probability ``p`` applies to."""
        if p <= 0:
            return torch.zeros(0, dtype=torch.long)
        return torch.as_tensor(np.flatnonzero(self.rng.random(batch) < p), dtype=torch.long)

    def _uniform(self, bounds: tuple[float, float], n: int) -> np.ndarray:
        return self.rng.uniform(bounds[0], bounds[1], size=n)

    def _log_uniform(self, bounds: tuple[float, float], n: int) -> np.ndarray:
        return np.exp(self.rng.uniform(math.log(bounds[0]), math.log(bounds[1]), size=n))

    # -- far field, mixing, recorder -----------------------------------------------------------------
    def _far_field(self, x: np.ndarray) -> None:
        """Distance low-pass and reverberation (step 2 of the module docstring), in place."""
        cfg, (batch, n), sr = self.cfg, x.shape, self.sample_rate
        p = max(cfg.reverb_p, cfg.lowpass_p)
        if p <= 0:
            return
        u = self.rng.random(batch)
        for i in np.flatnonzero(u < p):
            d = float(self._log_uniform(cfg.distance_m, 1)[0])
            cutoff = lowpass_cutoff_hz(d) if u[i] < cfg.lowpass_p else sr / 2  # sr / 2: no low-pass
            if u[i] < cfg.reverb_p:
                rt60 = float(self._uniform(cfg.reverb_rt60_s, 1)[0])
                drr = (drr_for_distance(d) if cfg.reverb_drr_from_distance
                       else float(self._uniform(cfg.reverb_drr_db, 1)[0]))
                x[i] = propagate(x[i], sr, Propagation(d, cutoff, rt60, drr), self.rng)[:n]
            else:
                x[i] = lowpass(x[i].astype(np.float64), sr, cutoff)

    def _multiclip(self, x: np.ndarray, targets: np.ndarray) -> None:
        """Other species' clips of the batch added in (step 3), in place."""
        cfg, batch = self.cfg, x.shape[0]
        if batch < 2 or not len(sel := self._select(batch, cfg.multiclip_p)):
            return
        src, src_y = x.copy(), targets.copy()
        energy = np.square(src, dtype=np.float64).sum(-1)
        labels = src_y > 0
        for i in sel.tolist():
            partners = [j for j in range(batch) if j != i and labels[j].any() and not (labels[i] & labels[j]).any()
                        and energy[j] > 0]
            if energy[i] <= 0 or not partners:
                continue
            k = min(int(self.rng.integers(1, cfg.multiclip_max + 1)), len(partners))
            chosen = self.rng.choice(partners, size=k, replace=False)
            for j, level in zip(chosen.tolist(), self._uniform(cfg.multiclip_db, k), strict=True):
                x[i] += src[j] * np.float32(math.sqrt(energy[i] / energy[j]) * 10 ** (level / 20))
                targets[i] = np.maximum(targets[i], src_y[j])

    def _beds(self, x: np.ndarray, targets: np.ndarray) -> None:
        """The sample mixed into a bed at a band SNR (step 4), in place."""
        cfg, (batch, n), sr = self.cfg, x.shape, self.sample_rate
        if not self.beds or not len(sel := self._select(batch, cfg.background_p).numpy()):
            return
        picks = self.rng.integers(0, len(self.beds), len(sel))
        snrs = self._uniform(cfg.background_snr_db, len(sel))
        for i, j, snr in zip(sel, picks, snrs, strict=True):
            bed = crop(bed_samples(self.beds[j]), n, self.rng).astype(np.float64)
            banded = band_signal(x[i], sr)  # filtered once for both the call's extent and its power
            gain = gain_for_snr(bed, x[i], float(snr), sr, loud_samples(banded, sr), call_banded=banded)
            if gain > 0 and math.isfinite(gain):  # else a silent sample or bed: the SNR is undefined, left alone
                x[i] += bed / gain
                if self.bed_targets is not None:
                    targets[i] = np.maximum(targets[i], self.bed_targets[j])

    def _recorder(self, x: np.ndarray) -> None:
        """Random high-pass and random EQ (step 5), in place."""
        cfg, batch, sr = self.cfg, x.shape[0], self.sample_rate
        top = 0.45 * sr
        if len(sel := self._select(batch, cfg.highpass_p).numpy()):
            cutoffs = np.minimum(self._log_uniform(cfg.highpass_hz, len(sel)), top)
            for i, fc in zip(sel, cutoffs, strict=True):
                x[i] = scipy.signal.sosfilt(scipy.signal.butter(2, fc, btype="high", fs=sr, output="sos"), x[i])
        if len(sel := self._select(batch, cfg.eq_p).numpy()):
            for i in sel:
                m = cfg.eq_filters
                kinds = self.rng.integers(0, len(EQ_KINDS), m)
                freqs = np.minimum(self._log_uniform(cfg.eq_freq_hz, m), top)
                gains, qs = self._uniform(cfg.eq_gain_db, m), self._uniform(cfg.eq_q, m)
                sos = np.concatenate([biquad(EQ_KINDS[t], f, g, q if t == 0 else math.sqrt(0.5), sr)
                                      for t, f, g, q in zip(kinds, freqs, gains, qs, strict=True)])
                x[i] = scipy.signal.sosfilt(sos, x[i])

    # -- waveform ----------------------------------------------------------------------------------
    def waveform(self, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch of waveforms; steps that add labelled sound also update the targets.

        Args:
            x (torch.Tensor): ``(batch, samples)`` float32, any device.
            targets (torch.Tensor): ``(batch, n_classes)``, same device.

        Returns:
            tuple: waveforms ``(batch, samples)`` and targets ``(batch, n_classes)``, new tensors (the
            inputs are not modified).
        """
        cfg, (batch, n) = self.cfg, x.shape
        x, targets = x.clone(), targets.clone()
        if len(sel := self._select(batch, cfg.shift_p)):
            max_shift = int(cfg.shift_max_s * self.sample_rate)
            for i, shift in zip(sel.tolist(), self.rng.integers(-max_shift, max_shift + 1, len(sel)), strict=True):
                x[i] = torch.roll(x[i], int(shift))
        if len(sel := self._select(batch, cfg.speed_p)):
            factor = round(float(self._uniform(cfg.speed_range, 1)[0]), 2)
            if factor != 1.0:
                # orig_freq=100 keeps the resampling kernel small; speed depends only on the ratio.
                fast, _ = torchaudio.functional.speed(x[sel], orig_freq=100, factor=factor)
                x[sel] = _fit(fast, n)
        if len(sel := self._select(batch, cfg.pitch_p)):
            x[sel] = pitch_shift(x[sel], float(self._uniform(cfg.pitch_semitones, 1)[0]))
        if self._numpy_steps:  # steps 2-5 in numpy on the CPU (x and targets are this call's own copies)
            device = x.device
            xn, yn = x.cpu().numpy(), targets.cpu().numpy()
            self._far_field(xn)
            self._multiclip(xn, yn)
            self._beds(xn, yn)
            self._recorder(xn)
            x, targets = torch.from_numpy(xn).to(device), torch.from_numpy(yn).to(device)
        if len(sel := self._select(batch, cfg.noise_p)):
            colors = self.rng.choice(cfg.noise_colors, len(sel))
            noise = torch.stack([colored_noise((1, n), str(c), self.generator)[0] for c in colors])
            snr = torch.as_tensor(self._uniform(cfg.noise_snr_db, len(sel)), dtype=x.dtype)
            x[sel] = mix_at_snr(x[sel], noise.to(x.device), snr.to(x.device))
        if len(sel := self._select(batch, cfg.gain_p)):
            gain = torch.as_tensor(10 ** (self._uniform(cfg.gain_db, len(sel)) / 20), dtype=x.dtype)
            x[sel] = x[sel] * gain.to(x.device)[:, None]
        return x, targets

    # -- spectrogram -------------------------------------------------------------------------------
    def _masked(self, images: torch.Tensor, sel: torch.Tensor, param: int, axis: int, count: int) -> torch.Tensor:
        """``count`` SpecAugment masks on ``images[sel]`` along ``axis`` (-2: mel bands, -1: frames).

        Each image gets its own mask of width ``U(0, param)`` at ``U(0, size - width)``, the draws and masking of
        ``torchaudio.functional.mask_along_axis_iid`` (``FrequencyMasking``/``TimeMasking`` with ``iid_masks``),
        but from a generator of this augmenter's, not torch's global one: the batch can be prepared in a
        background thread while the model's dropout draws from the global generator.
        """
        generator = torch.Generator(device=images.device).manual_seed(int(self.rng.integers(0, 2**62)))
        size = images.shape[axis]
        param = min(param, size)
        if param < 1:
            return images
        part = images[sel]
        lead = part.shape[:-2]
        positions = torch.arange(size, device=part.device, dtype=part.dtype)
        shape = (*lead, 1, size) if axis == -1 else (*lead, size, 1)
        for _ in range(count):
            width = torch.rand(lead, generator=generator, device=part.device, dtype=part.dtype) * param
            start = torch.rand(lead, generator=generator, device=part.device, dtype=part.dtype) * (size - width)
            lo, hi = start.long(), (start.long() + width.long())
            mask = (positions >= lo[..., None]) & (positions < hi[..., None])
            part = part.masked_fill(mask.reshape(shape), 0.0)
        images[sel] = part
        return images

    def spectrogram(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SpecAugment, mixup and cutmix on a batch of images.

        Args:
            images (torch.Tensor): ``(batch, 1, n_mels, frames)``.
            targets (torch.Tensor): ``(batch, n_classes)``.

        Returns:
            tuple: augmented images and the matching targets (new tensors).
        """
        cfg, batch = self.cfg, images.shape[0]
        images, targets = images.clone(), targets.clone()
        if len(sel := self._select(batch, cfg.freq_mask_p)):
            images = self._masked(images, sel.to(images.device), cfg.freq_mask_param, -2, cfg.n_freq_masks)
        if len(sel := self._select(batch, cfg.time_mask_p)):
            images = self._masked(images, sel.to(images.device), cfg.time_mask_param, -1, cfg.n_time_masks)
        if batch > 1 and cfg.mixup_p > 0 and self.rng.random() < cfg.mixup_p:
            lam = float(self.rng.beta(cfg.mixup_alpha, cfg.mixup_alpha))
            perm = torch.as_tensor(self.rng.permutation(batch), device=images.device)
            images, targets = mixup(images, targets, lam, perm, cfg.mixup_targets)
        if batch > 1 and cfg.cutmix_p > 0 and self.rng.random() < cfg.cutmix_p:
            frames = images.shape[-1]
            width = int(round((1 - self.rng.beta(cfg.cutmix_alpha, cfg.cutmix_alpha)) * frames))
            start = int(self.rng.integers(0, frames - width + 1))
            perm = torch.as_tensor(self.rng.permutation(batch), device=images.device)
            images, targets = cutmix(images, targets, start, width, perm)
        return images, targets
