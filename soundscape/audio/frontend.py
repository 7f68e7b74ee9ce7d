"""The serving front end: audio in, model input images out, without torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import functional as F
from .config import FrontendConfig
from .decode import Audio

__all__ = ["Frontend", "Windows"]


@dataclass(frozen=True)
class Windows:
    """Fixed-length windows cut from one recording.

    Attributes:
        samples (np.ndarray): ``(n_windows, window_samples)`` float32.
        starts_s (np.ndarray): ``(n_windows,)`` start of each window in seconds.
        window_s (float): window length in seconds (``end = start + window_s``).
    """

    samples: np.ndarray
    starts_s: np.ndarray
    window_s: float

    def __len__(self) -> int:
        return len(self.starts_s)

    @property
    def ends_s(self) -> np.ndarray:
        return self.starts_s + self.window_s


class Frontend:
    """Log-mel front end in numpy, with the Hann window and mel filter bank precomputed.

    Computes the same images as :class:`soundscape.audio.transforms.LogMelSpectrogram` (torchaudio) to
    within 1e-3 after normalisation.

    Args:
        cfg (FrontendConfig): front-end settings (from the model card).
        workers (int): FFT threads. (Default: ``1``; the service parallelises across requests instead)

    Example:
        >>> fe = Frontend(FrontendConfig())
        >>> windows = fe.windows(audio)          # Windows, 12 of them for one minute
        >>> images = fe(windows.samples)         # (12, 128, 313) float32
    """

    def __init__(self, cfg: FrontendConfig, *, workers: int = 1) -> None:
        self.cfg = cfg
        self.workers = workers
        self.window = F.hann_window(cfg.win_length or cfg.n_fft, cfg.n_fft)
        fb = F.mel_filterbank(cfg.n_freqs, cfg.fmin, cfg.fmax, cfg.n_mels, cfg.sample_rate,
                              cfg.mel_norm, cfg.mel_scale)
        # Bins above the last non-zero filter row add nothing: skip them in |X|^2 and the matmul.
        nonzero = np.flatnonzero(fb.any(axis=1))
        self.max_bin = int(nonzero[-1]) + 1 if len(nonzero) else cfg.n_freqs
        self.fb = np.ascontiguousarray(fb[: self.max_bin])

    def windows(self, audio: Audio | np.ndarray, hop_s: float | None = None) -> Windows:
        """Cut decoded audio into windows by the card's windowing policy.

        Args:
            audio: :class:`Audio` at ``cfg.sample_rate``, or a ``(n,)`` float32 array at that rate.
            hop_s (float, optional): step between windows. (Default: ``cfg.hop_s``)
        """
        if isinstance(audio, Audio):
            if audio.sample_rate != self.cfg.sample_rate:
                raise ValueError(
                    f"audio is at {audio.sample_rate} Hz but the front end expects {self.cfg.sample_rate} Hz"
                )
            samples = audio.samples
        else:
            samples = np.asarray(audio, dtype=np.float32)
        hop = self.cfg.hop_s if hop_s is None else hop_s
        data, starts = F.frame_windows(samples, self.cfg.sample_rate, self.cfg.window_s, hop,
                                       self.cfg.min_partial_s)
        return Windows(samples=data, starts_s=starts, window_s=self.cfg.window_s)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """Images of a batch of windows.

        Args:
            windows (np.ndarray): ``(batch, window_samples)`` float32.

        Returns:
            np.ndarray: ``(batch, n_mels, n_frames)`` float32.
        """
        cfg = self.cfg
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[1] != cfg.window_samples:
            raise ValueError(
                f"expected windows of shape (batch, {cfg.window_samples}), got {windows.shape}"
            )
        power = F.power_spectrogram(windows, self.window, cfg.hop_length, cfg.power,
                                    max_bin=self.max_bin, workers=self.workers)
        mel = np.matmul(power, self.fb)  # (batch, frames, n_mels)
        db = F.amplitude_to_db(mel, cfg.amin, cfg.top_db)
        images = F.normalize(db, cfg.normalize, cfg.norm_eps)
        return np.ascontiguousarray(images.transpose(0, 2, 1), dtype=np.float32)
