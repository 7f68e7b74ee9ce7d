"""Pure numpy functions of the front end: the windowing policy, the Hann window and the mel filter bank.

Every parameter is explicit. :class:`soundscape.audio.Frontend` precomputes the Hann window and filter
bank once and computes the images itself (STFT power, dB, normalisation, in place); there is one copy of
that computation. No torch here: this module is the serving path. ``training`` computes the same image with
torchaudio (:mod:`soundscape.audio.transforms`), and a parity test ties the two together.

Windowing has one implementation, :func:`stream_windows`, which cuts a signal that arrives in blocks (a
streamed file) exactly as the whole signal (one block) would be cut; :func:`frame_windows` is its
one-block case. :func:`stream_grid` cuts the grid of model windows that a waveform model with
``model_grid="recording"`` runs on, from the same blocks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np

__all__ = [
    "frame_windows",
    "hann_window",
    "hz_to_mel",
    "mel_filterbank",
    "mel_to_hz",
    "stream_grid",
    "stream_windows",
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


def stream_windows(blocks: Iterable[np.ndarray], sample_rate: int, window_s: float, hop_s: float,
                   min_partial_s: float) -> Iterator[tuple[float, np.ndarray]]:
    """Windows of a signal that arrives in blocks, equal to those of the concatenated signal.

    Full windows are yielded as soon as the blocks cover them; once the signal ends and its length is
    known, :func:`window_starts` decides the rest (a zero-padded partial last window, or the single window
    of a short signal). Only the samples the next window needs are kept between blocks.

    Args:
        blocks: ``(n,)`` float32 blocks at ``sample_rate``, in order (one block: a whole decoded file).
        sample_rate (int): rate of the blocks.
        window_s, hop_s, min_partial_s: the windowing policy (see :func:`window_starts`).

    Yields:
        tuple: ``(start_s, window)`` with ``window`` of shape ``(window_samples,)`` float32 (a copy).
    """
    win = int(round(window_s * sample_rate))
    buf = np.zeros(0, np.float32)
    offset = 0  # sample index of buf[0] in the whole signal
    total = 0
    i = 0
    for block in blocks:
        buf = np.concatenate([buf, block]) if len(buf) else np.asarray(block, dtype=np.float32)
        total += len(block)
        while True:
            start = i * hop_s
            a = int(round(start * sample_rate))
            if a + win > total:
                break
            yield start, buf[a - offset : a - offset + win].copy()
            i += 1
        keep_from = min(int(round(i * hop_s * sample_rate)), total)
        buf = buf[keep_from - offset :]
        offset = keep_from
    starts = window_starts(total, sample_rate, window_s, hop_s, min_partial_s)
    for start in starts[i:]:
        a = int(round(float(start) * sample_rate))
        out = np.zeros(win, np.float32)
        chunk = buf[max(a - offset, 0) : a - offset + win]
        out[: len(chunk)] = chunk
        yield float(start), out


def stream_grid(blocks: Iterable[np.ndarray], size: int, hop: int) -> Iterator[tuple[int, np.ndarray]]:
    """Fixed windows on one grid over a signal that arrives in blocks: starts 0, ``hop``, ``2 * hop``, ...
    samples, every one that starts inside the signal (the last ones zero-padded past its end).

    Args:
        blocks: ``(n,)`` float32 blocks, in order.
        size (int): window length in samples.
        hop (int): step between window starts in samples (at most ``size``, so the grid covers the signal).

    Yields:
        tuple: ``(j, window)``: the grid index (the window starts at ``j * hop``) and a ``(size,)`` float32
        copy, as soon as the blocks cover it.
    """
    if not 1 <= hop <= size:
        raise ValueError(f"hop must be in [1, size={size}], got {hop}")
    buf = np.zeros(0, np.float32)
    offset = total = j = 0  # offset: sample index of buf[0] in the whole signal
    for block in blocks:
        buf = np.concatenate([buf, block]) if len(buf) else np.asarray(block, dtype=np.float32)
        total += len(block)
        while j * hop + size <= total:
            yield j, buf[j * hop - offset : j * hop - offset + size].copy()
            j += 1
        keep_from = min(j * hop, total)
        buf, offset = buf[keep_from - offset :], keep_from
    while j * hop < total:
        out = np.zeros(size, np.float32)
        part = buf[j * hop - offset :]
        out[: len(part)] = part
        yield j, out
        j += 1


def frame_windows(samples: np.ndarray, sample_rate: int, window_s: float, hop_s: float,
                  min_partial_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Cut a mono signal into fixed windows (zero-padding a partial last one): :func:`stream_windows` of
    one block.

    Args:
        samples (np.ndarray): ``(n,)`` float32 mono signal.
        sample_rate (int): its rate in Hz.
        window_s, hop_s, min_partial_s: see :func:`window_starts`.

    Returns:
        tuple: ``windows`` ``(n_windows, window_samples)`` float32 and ``starts`` ``(n_windows,)``
        in seconds.
    """
    cut = list(stream_windows([samples], sample_rate, window_s, hop_s, min_partial_s))
    if not cut:
        return np.zeros((0, int(round(window_s * sample_rate))), np.float32), np.zeros(0)
    return np.stack([w for _, w in cut]), np.asarray([s for s, _ in cut], dtype=np.float64)


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
