"""The log-mel front end at a file's own sample rate, instead of resampling the file to the card's.

A mel card's STFT at ``cfg.sample_rate`` (e.g. 32 kHz, ``n_fft`` 2048, hop 512) has the same FFT bin spacing
(15.625 Hz), frame times and frame count as the STFT at a rate ``k`` times higher with every length in samples
multiplied by ``k`` (48 kHz: ``n_fft`` 3072, hop 768), so the same mel filter bank rows (torchaudio's
``melscale_fbanks`` for the higher rate and ``n_fft * k // 2 + 1`` bins is the card's bank, zero-padded above
``fmax``). For band-limited audio the power spectrum at the higher rate is ``k^2`` times the card's (``k^power``
for another exponent), so the images agree once the power is multiplied by ``(cfg.sample_rate / rate)^power``
(:func:`native_power_scale`; the front end folds it into its filter bank).

Measured against the resampled path (soxr HQ, then the card's front end): in dB before normalisation, <= 1.7e-4 dB
in every frame but the two at each end of a window (band-limited chirps and tones, full-band noise, a demo
minute; 24 to 96 kHz). Those edge frames differ (up to ~1 normalised, ~15 dB on quiet bins) because the reflect
padding mirrors about instants 1/rate apart and folds different bands into them; through each window's
normalisation they move the other frames a little: normalised images agree to 1.2e-4 on a demo minute at 48, 64
and 96 kHz, 1e-3 to 4e-3 on synthetic chirps and 2e-3 to 9e-3 on white noise (tests/audio/test_native_rate.py).

Only exact cases qualify (:func:`native_config`): a mel card, a rate other than the card's, lengths that scale
to whole samples, ``fmax`` inside the resampler's flat passband (91 % of the lower rate's Nyquist frequency: a card
whose ``fmax`` is at its Nyquist frequency, whose top bands the resampler attenuates, always resamples), and a rate
the reader accepts. The default card (32 kHz, ``n_fft`` 2048, hop 512, ``fmax`` 14 kHz) runs natively at 48, 64,
96 and 192 kHz; 44.1 and 22.05 kHz (no whole-sample hop) and 16 and 24 kHz (Nyquist 8 and 12 kHz < ``fmax``) keep
resampling. Waveform cards always resample.
"""

from __future__ import annotations

from fractions import Fraction

from .config import FrontendConfig

__all__ = ["RESAMPLER_PASSBAND", "native_config", "native_power_scale"]

# soxr's HQ filter (the reader's resampler) is flat (< 0.001 dB) up to 0.9125 of the lower rate's Nyquist frequency
# and rolls off above: mel bands above this fraction would differ between the two paths, as much as the rolloff.
RESAMPLER_PASSBAND = 0.91
# The reader's accepted rates (soundscape.audio.reader.MIN/MAX_SAMPLE_RATE), repeated here so that this module
# (imported by the card's users) loads no soundfile/soxr.
_MIN_RATE, _MAX_RATE = 8_000, 384_000


def _scaled(value: int, ratio: Fraction) -> int | None:
    """``value * ratio`` when it is a whole number, else None."""
    out = value * ratio
    return int(out) if out.denominator == 1 else None


def native_config(cfg: FrontendConfig, rate: int) -> FrontendConfig | None:
    """The front end that computes ``cfg``'s log-mel images directly from audio at ``rate``, or None when that is
    not exactly possible (then the audio is resampled to ``cfg.sample_rate`` as before).

    The result has ``sample_rate=rate`` and ``n_fft``, ``hop_length`` and ``win_length`` (if set) multiplied by
    ``rate / cfg.sample_rate``; every other field is ``cfg``'s. Its images have ``cfg``'s shape.

    Args:
        cfg (FrontendConfig): a card's front end.
        rate (int): the rate the audio is decoded at (the file's own).

    Returns:
        FrontendConfig | None: None for waveform input, ``rate == cfg.sample_rate``, a rate outside the reader's
        range, ``fmax`` above the resampler's passband (``0.91 * min(rate, cfg.sample_rate) / 2``: the resampled
        path attenuates the bands above it, the native path would not), or any length (``n_fft``, ``hop_length``,
        ``win_length``, the window's samples) that is not a whole number of samples at ``rate``.
    """
    rate = int(rate)
    if cfg.input != "mel" or rate == cfg.sample_rate or not _MIN_RATE <= rate <= _MAX_RATE:
        return None
    if cfg.fmax > RESAMPLER_PASSBAND * min(rate, cfg.sample_rate) / 2:
        return None
    ratio = Fraction(rate, cfg.sample_rate)
    n_fft, hop = _scaled(cfg.n_fft, ratio), _scaled(cfg.hop_length, ratio)
    win = None if cfg.win_length is None else _scaled(cfg.win_length, ratio)
    window = _scaled(cfg.window_samples, ratio)
    if n_fft is None or hop is None or window is None or (cfg.win_length is not None and win is None):
        return None
    if not 64 <= n_fft <= 16384:  # FrontendConfig's own bounds
        return None
    try:
        out = FrontendConfig.model_validate(
            {**cfg.model_dump(), "sample_rate": rate, "n_fft": n_fft, "hop_length": hop, "win_length": win})
    except ValueError:
        return None
    if out.window_samples != window or out.n_frames != cfg.n_frames or out.image_shape != cfg.image_shape:
        return None
    return out


def native_power_scale(cfg: FrontendConfig, rate: int) -> float:
    """The factor that brings the spectrum's power at ``rate`` to its power at ``cfg.sample_rate``:
    ``(cfg.sample_rate / rate) ** cfg.power``."""
    return float((cfg.sample_rate / rate) ** cfg.power)
