"""Pure numpy functions of the front end: windowing, STFT power, mel filter bank, dB, normalisation.

Every parameter is explicit; :class:`soundscape.audio.Frontend` precomputes the Hann window and filter
bank once. No torch here: this module is the serving path. ``training`` computes the same image with
torchaudio (:mod:`soundscape.audio.transforms`), and a parity test ties the two together.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from .config import FrontendConfig

__all__ = [
    "amplitude_to_db",
    "cut_windows",
    "frame_windows",
    "hann_window",
    "hz_to_mel",
    "mel_filterbank",
    "mel_to_hz",
    "normalize",
    "power_spectrogram",
    "window_starts",
]


def window_starts(n_samples: int, sample_rate: int, window_s: float, hop_s: float,
                  min_partial_s: float) -> np.ndarray:
    """Start times (seconds) of the analysis windows of a signal, following the windowing policy.

    Args:
        n_samples (int): length of the signal.
        sample_rate (int): its rate in Hz.
        window_s (float): window length in seconds.
        hop_s (float): step between window starts in seconds.
        min_partial_s (float): keep a last, partly covered window when it holds at least this much
            audio; a signal shorter than one window always gives one window.

    Returns:
        np.ndarray: ``(n_windows,)`` float64 start times.
    """
    if hop_s <= 0:
        raise ValueError(f"hop_s must be positive, got {hop_s}")
    duration = n_samples / sample_rate
    if n_samples <= 0:
        return np.zeros(0)
    # Small tolerance so that 60.0 s of audio with 5 s windows gives exactly 12 full windows.
    eps = 1e-9
    n_full = int(math.floor((duration - window_s) / hop_s + eps)) + 1 if duration + eps >= window_s else 0
    starts = [i * hop_s for i in range(n_full)]
    next_start = n_full * hop_s
    if n_full == 0:
        starts = [0.0]
    elif duration - next_start >= min_partial_s - eps and duration - next_start > eps:
        starts.append(next_start)
    return np.asarray(starts, dtype=np.float64)


def frame_windows(samples: np.ndarray, sample_rate: int, window_s: float, hop_s: float,
                  min_partial_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Cut a mono signal into fixed windows (zero-padding a partial last one).

    Args:
        samples (np.ndarray): ``(n,)`` float32 mono signal.
        sample_rate (int): its rate in Hz.
        window_s, hop_s, min_partial_s: see :func:`window_starts`.

    Returns:
        tuple: ``windows`` ``(n_windows, window_samples)`` float32 and ``starts`` ``(n_windows,)``
        in seconds.
    """
    starts = window_starts(len(samples), sample_rate, window_s, hop_s, min_partial_s)
    return cut_windows(samples, sample_rate, starts, int(round(window_s * sample_rate))), starts


def cut_windows(samples: np.ndarray, sample_rate: int, starts_s: np.ndarray, window_samples: int) -> np.ndarray:
    """Copy the windows starting at ``starts_s`` out of a signal, zero-padding any that run past its end.

    Args:
        samples (np.ndarray): ``(n,)`` float32 mono signal.
        sample_rate (int): its rate in Hz.
        starts_s (np.ndarray): ``(n_windows,)`` window starts in seconds (from :func:`window_starts`).
        window_samples (int): samples per window.

    Returns:
        np.ndarray: ``(n_windows, window_samples)`` float32.
    """
    out = np.zeros((len(starts_s), window_samples), dtype=np.float32)
    for i, start in enumerate(starts_s):
        a = int(round(start * sample_rate))
        chunk = samples[a : a + window_samples]
        out[i, : len(chunk)] = chunk
    return out


def hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window of ``win_length`` centred in ``n_fft`` samples (torch's convention)."""
    n = np.arange(win_length, dtype=np.float64)
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)
    left = (n_fft - win_length) // 2
    out = np.zeros(n_fft, dtype=np.float64)
    out[left : left + win_length] = w
    return out.astype(np.float32)


def hz_to_mel(freq: np.ndarray | float, mel_scale: str = "htk") -> np.ndarray:
    """Hertz to mels, HTK or Slaney formula (torchaudio's definitions)."""
    f = np.asarray(freq, dtype=np.float64)
    if mel_scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep,
                    f / f_sp)


def mel_to_hz(mels: np.ndarray, mel_scale: str = "htk") -> np.ndarray:
    """Mels to Hertz, inverse of :func:`hz_to_mel`."""
    m = np.asarray(mels, dtype=np.float64)
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(n_freqs: int, fmin: float, fmax: float, n_mels: int, sample_rate: int,
                   norm: str | None = "slaney", mel_scale: str = "slaney") -> np.ndarray:
    """Triangular mel filter bank, the same matrix as ``torchaudio.functional.melscale_fbanks``.

    Returns:
        np.ndarray: ``(n_freqs, n_mels)`` float32.
    """
    all_freqs = np.linspace(0, sample_rate // 2, n_freqs)
    m_pts = np.linspace(hz_to_mel(fmin, mel_scale), hz_to_mel(fmax, mel_scale), n_mels + 2)
    f_pts = mel_to_hz(m_pts, mel_scale)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    if norm == "slaney":
        fb *= 2.0 / (f_pts[2 : n_mels + 2] - f_pts[:n_mels])[None, :]
    return fb.astype(np.float32)


def power_spectrogram(windows: np.ndarray, window: np.ndarray, hop_length: int, power: float = 2.0,
                      *, max_bin: int | None = None, workers: int = 1) -> np.ndarray:
    """Centred STFT magnitude**power of a batch of windows (reflect padding, like torch.stft).

    Args:
        windows (np.ndarray): ``(batch, samples)`` float32.
        window (np.ndarray): ``(n_fft,)`` analysis window.
        hop_length (int): STFT hop in samples.
        power (float): exponent of the magnitude. (Default: ``2.0``)
        max_bin (int, optional): keep bins ``[0, max_bin)`` only (bins above the highest mel filter
            add nothing). (Default: all)
        workers (int): FFT threads. (Default: ``1``)

    Returns:
        np.ndarray: ``(batch, frames, bins)`` float32 with ``frames = 1 + samples // hop_length``.
    """
    n_fft = len(window)
    padded = np.pad(windows, ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    frames = sliding_window_view(padded, n_fft, axis=-1)[:, ::hop_length]
    spec = scipy.fft.rfft(frames * window, axis=-1, workers=workers)
    if max_bin is not None:
        spec = spec[..., :max_bin]
    mag2 = np.square(spec.real) + np.square(spec.imag)
    if power == 2.0:
        return mag2
    return np.power(mag2, power / 2.0, dtype=np.float32)


def amplitude_to_db(spec: np.ndarray, amin: float, top_db: float | None) -> np.ndarray:
    """Power to dB (``10 * log10(max(x, amin))``), clipped at ``top_db`` below each item's maximum.

    Args:
        spec (np.ndarray): ``(batch, ...)`` non-negative power.

    Returns:
        np.ndarray: same shape, float32 dB.
    """
    db = np.log10(np.maximum(spec, amin))
    db *= 10.0
    if top_db is not None:
        peak = db.reshape(len(db), -1).max(axis=1)
        floor = (peak - top_db).reshape((-1,) + (1,) * (db.ndim - 1))
        np.maximum(db, floor, out=db)
    return db


def normalize(images: np.ndarray, mode: str, eps: float) -> np.ndarray:
    """Normalise each item of a batch on its own: ``standard`` (zero mean, unit std), ``minmax``
    ([0, 1]) or ``none``. The std (or range) is floored at ``eps`` so a flat image maps to zeros."""
    if mode == "none":
        return images
    flat = images.reshape(len(images), -1)
    shape = (-1,) + (1,) * (images.ndim - 1)
    if mode == "standard":
        mean = flat.mean(axis=1, dtype=np.float64).astype(np.float32).reshape(shape)
        std = flat.std(axis=1, dtype=np.float64).astype(np.float32).reshape(shape)
        return (images - mean) / np.maximum(std, eps)
    if mode == "minmax":
        lo = flat.min(axis=1).reshape(shape)
        hi = flat.max(axis=1).reshape(shape)
        return (images - lo) / np.maximum(hi - lo, eps)
    raise ValueError(f"unknown normalisation {mode!r}; expected 'standard', 'minmax' or 'none'")


def log_mel(windows: np.ndarray, cfg: FrontendConfig, *, workers: int = 1) -> np.ndarray:
    """The model's input images for a batch of windows (no precomputation; see ``Frontend``).

    Args:
        windows (np.ndarray): ``(batch, window_samples)`` float32 at ``cfg.sample_rate``.
        cfg (FrontendConfig): front-end settings.

    Returns:
        np.ndarray: ``(batch, n_mels, n_frames)`` float32.
    """
    from .frontend import Frontend

    return Frontend(cfg, workers=workers)(windows)
