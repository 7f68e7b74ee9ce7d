"""A spectrogram for people: what the model saw, as one image over a whole recording.

Built from the window pipeline's chunks as they pass (:class:`SpectrogramBuilder`), so nothing is computed
twice: a mel model's chunks hold its own inputs (log-mel images, normalised per window), which are placed at
their window's time. A waveform model's chunks hold raw samples, so each report window is put back together
from its model windows and shown through a default log-mel front end (display only; ``source`` says so).
Long recordings are max-pooled in time to at most ``max_columns`` columns, in bounded memory.
:func:`png` writes the image as an 8-bit palette PNG with numpy and zlib (no imaging library).
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from soundscape.audio import Frontend, FrontendConfig
from soundscape.audio.functional import hz_to_mel, mel_to_hz
from soundscape.pipeline import Chunk

__all__ = ["VIRIDIS", "Spectrogram", "SpectrogramBuilder", "display_config", "png"]

Source = Literal["model_frontend", "display_logmel"]
# Values of a normalised log-mel image shown from the darkest to the brightest colour.
_DISPLAY_RANGE = {"standard": (-1.0, 4.5), "minmax": (0.0, 1.0)}
_VIRIDIS_STOPS = ["440154", "482878", "3e4989", "31688e", "26828e", "1f9e89", "35b779", "6ece58", "b5de2b",
                  "fde725"]


def _palette(stops: list[str]) -> np.ndarray:
    rgb = np.array([[int(h[i:i + 2], 16) for i in (0, 2, 4)] for h in stops], dtype=np.float64)
    x = np.linspace(0, 1, len(stops))
    t = np.linspace(0, 1, 256)
    return np.stack([np.interp(t, x, rgb[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


VIRIDIS = _palette(_VIRIDIS_STOPS)  # (256, 3) uint8


@dataclass(frozen=True)
class Spectrogram:
    """A recording's spectrogram as an image.

    Attributes:
        image (np.ndarray): ``(n_rows, n_columns)`` uint8, row 0 the lowest frequency, column ``i`` the time
            ``[i, i + 1) * seconds_per_column``.
        seconds_per_column (float): time step of the columns.
        frequencies_hz (np.ndarray): ``(n_rows,)`` centre frequency of each row (mel bands).
        source (str): ``model_frontend`` (the model's own inputs) or ``display_logmel`` (a default log-mel
            computed for display: the model takes raw audio).
        config (FrontendConfig): the front end the image comes from.
    """

    image: np.ndarray
    seconds_per_column: float
    frequencies_hz: np.ndarray
    source: Source
    config: FrontendConfig

    @property
    def duration_s(self) -> float:
        return self.image.shape[1] * self.seconds_per_column


def display_config(cfg: FrontendConfig) -> FrontendConfig:
    """The front end a spectrogram is drawn with: the card's own for mel models; for waveform models the
    default log-mel at the model's rate, windows and band."""
    if cfg.input == "mel":
        return cfg
    return FrontendConfig(sample_rate=cfg.sample_rate, window_s=cfg.window_s, hop_s=cfg.hop_s,
                          min_partial_s=cfg.min_partial_s, fmin=cfg.fmin, fmax=cfg.fmax)


def mel_centres(cfg: FrontendConfig) -> np.ndarray:
    """Centre frequency (Hz) of each mel band of ``cfg`` (torchaudio's filter bank layout)."""
    lo, hi = hz_to_mel(cfg.fmin, cfg.mel_scale), hz_to_mel(cfg.fmax, cfg.mel_scale)
    return mel_to_hz(np.linspace(lo, hi, cfg.n_mels + 2), cfg.mel_scale)[1:-1]


def _quantize(images: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """``(n, n_mels, frames)`` normalised log-mel -> uint8, the display range of ``cfg.normalize``."""
    if cfg.normalize in _DISPLAY_RANGE:
        lo, hi = (np.float32(v) for v in _DISPLAY_RANGE[cfg.normalize])
    else:  # dB: each window's peak and top_db (80 dB without one) below it
        hi = images.max(axis=(1, 2), keepdims=True)
        lo = hi - np.float32(cfg.top_db or 80.0)
    scaled = (images - lo) * (255.0 / np.maximum(hi - lo, 1e-6))
    return np.clip(scaled, 0, 255).astype(np.uint8)


class SpectrogramBuilder:
    """Collects a recording's spectrogram from its pipeline chunks.

    Args:
        cfg (FrontendConfig): the model card's front end.
        max_columns (int): most columns of the image; longer recordings are max-pooled in time.

    Call :meth:`start` once the duration is known, :meth:`add` for each chunk (in order or not), then
    :meth:`finish`. Memory: one ``(n_mels, max_columns)`` uint8 grid, whatever the recording's length.
    """

    def __init__(self, cfg: FrontendConfig, *, max_columns: int = 4096) -> None:
        if max_columns < 1:
            raise ValueError(f"max_columns must be >= 1, got {max_columns}")
        self.cfg = cfg
        self.display = display_config(cfg)
        self.source: Source = "model_frontend" if cfg.input == "mel" else "display_logmel"
        self._frontend = None if cfg.input == "mel" else Frontend(self.display)
        self.frame_s = self.display.hop_length / self.display.sample_rate
        self.max_columns = max_columns
        self.seconds_per_column = self.frame_s
        self._grid = np.zeros((self.display.n_mels, 0), np.uint8)

    def start(self, duration_s: float) -> None:
        """Size the grid for a recording of ``duration_s`` seconds (plus a last, zero-padded window)."""
        axis_s = max(duration_s, 0.0) + self.cfg.window_s
        self.seconds_per_column = max(self.frame_s, axis_s / self.max_columns)
        columns = min(self.max_columns, math.ceil(axis_s / self.seconds_per_column))
        self._grid = np.zeros((self.display.n_mels, columns), np.uint8)

    def add(self, starts_s: np.ndarray, images: np.ndarray) -> None:
        """One chunk's windows: their starts and the model inputs the pipeline made for them (see :meth:`add_chunk`)."""
        self.add_chunk(Chunk(np.asarray(starts_s, dtype=np.float64), images))

    def add_chunk(self, chunk: Chunk) -> None:
        """One chunk of the window pipeline (a waveform model's report windows are put back together first)."""
        mel = chunk.images if self._frontend is None else self._frontend(chunk.report_windows(self.cfg))
        frames = np.arange(mel.shape[-1]) * self.frame_s
        for start, image in zip(chunk.starts_s, _quantize(mel, self.display), strict=True):
            self._place(float(start) + frames, image)

    def _place(self, times_s: np.ndarray, image: np.ndarray) -> None:
        cols = (times_s / self.seconds_per_column).astype(np.int64)
        keep = cols < self._grid.shape[1]
        if not keep.any():
            return
        cols, image = cols[keep], image[:, keep]
        uniq, first = np.unique(cols, return_index=True)  # cols ascend: reduceat pools each column's frames
        pooled = np.maximum.reduceat(image, first, axis=1)
        self._grid[:, uniq] = np.maximum(self._grid[:, uniq], pooled)

    def finish(self, axis_s: float) -> Spectrogram:
        """The image up to ``axis_s`` seconds (the recording's length, or its last window's end)."""
        columns = min(self._grid.shape[1], max(1, math.ceil(axis_s / self.seconds_per_column - 1e-9)))
        return Spectrogram(image=self._grid[:, :columns].copy(), seconds_per_column=self.seconds_per_column,
                           frequencies_hz=mel_centres(self.display), source=self.source, config=self.display)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png(image: np.ndarray, palette: np.ndarray = VIRIDIS, *, flip: bool = True, level: int = 6) -> bytes:
    """An 8-bit palette PNG of a ``(rows, columns)`` uint8 image.

    Args:
        image (np.ndarray): the values, indices into ``palette``.
        palette (np.ndarray): ``(256, 3)`` uint8 colours. (Default: :data:`VIRIDIS`)
        flip (bool): put row 0 at the bottom (low frequencies down). (Default: ``True``)
        level (int): zlib compression level.
    """
    img = np.ascontiguousarray(image[::-1] if flip else image, dtype=np.uint8)
    height, width = img.shape
    raw = np.zeros((height, width + 1), np.uint8)  # each row starts with filter type 0 (none)
    raw[:, 1:] = img
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    return b"".join([b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", header),
                     _png_chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes()),
                     _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), level)), _png_chunk(b"IEND", b"")])
