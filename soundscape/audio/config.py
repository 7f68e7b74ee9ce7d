"""The typed configuration of the audio front end.

One :class:`FrontendConfig` describes everything between an audio file and what a model sees: the sample
rate, the 5-second report windows and either the log-mel spectrogram (``input="mel"``, the default) or the
model's own waveform windows inside each report window (``input="waveform"``, e.g. BirdNET's 3 s at 48 kHz).
It is saved inside each model's card, so the service rebuilds exactly the front end the model was trained with.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["FrontendConfig"]


class FrontendConfig(BaseModel):
    """Audio front end: resampling, windowing and log-mel settings.

    Windowing policy (BirdCLEF style): windows of ``window_s`` seconds start at 0, ``hop_s``,
    ``2 * hop_s``, ... A 60 s file with the default 5 s window and hop gives exactly 12 windows ending at
    5, 10, ..., 60 s. A last window that is only partly covered by audio is kept (zero-padded to the full
    window) when it holds at least ``min_partial_s`` seconds of audio, and dropped otherwise. A file
    shorter than one window always gives one zero-padded window, so every non-empty file has a result.

    Log-mel: a centred STFT (reflect padding, periodic Hann window) gives the power spectrum, a mel
    filter bank (torchaudio's ``melscale_fbanks``) maps it to ``n_mels`` bands, power is converted to dB
    (``10 * log10(max(x, amin))``), clipped at ``top_db`` below each window's maximum, and each window is
    normalised on its own (``normalize``).

    Waveform models (``input="waveform"``) take raw samples in windows of their own length,
    ``model_window_s``. Results are still reported per report window (``window_s``, cut at ``hop_s`` as
    above): each report window is cut into model windows starting at 0, ``model_hop_s``, ``2 * model_hop_s``,
    ... with the last one aligned to the report window's end (3 s model windows in 5 s report windows: starts
    0 and 2 s). The model runs on all of them and a report window's probabilities are the ``pool`` (max) of
    its model windows' probabilities; embeddings are their mean. With ``model_grid="recording"`` the model
    windows lie instead on one grid over the whole recording (starts 0, ``model_hop_s``, ``2 * model_hop_s``,
    ... s, as BirdNET-Analyzer cuts its 3-s windows; the last one zero-padded past the end of the audio), each
    is run once, and a report window pools those that overlap it (3-s windows in 5-s report windows: 20 model
    windows a minute instead of 24). The log-mel settings are unused then,
    except ``fmin``/``fmax``, the band that detections report (Raven tables). A card without these fields
    is a mel model, as before.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Literal["mel", "waveform"] = Field(
        "mel", description="What the model takes: a log-mel image of each window (mel) or raw samples in its own "
        "windows (waveform: model_window_s, model_hop_s, pool).")
    sample_rate: int = Field(32000, ge=8000, le=384000, description="Rate the model expects, in Hz.")
    window_s: float = Field(5.0, gt=0, le=60, description="Length of one analysis window, in seconds.")
    hop_s: float = Field(5.0, gt=0, le=60, description="Default step between window starts, in seconds.")
    min_partial_s: float = Field(
        2.5, ge=0, description="A partial last window is kept when it holds at least this much audio."
    )
    model_window_s: float | None = Field(
        None, gt=0, le=60, description="waveform: the model's own window in seconds, at most window_s "
        "(default: window_s).")
    model_hop_s: float | None = Field(
        None, gt=0, le=60, description="waveform: step between model windows inside a report window; the last "
        "one is aligned to the report window's end (default: model_window_s).")
    model_grid: Literal["window", "recording"] = Field(
        "window", description="waveform: model windows placed inside each report window (window), or on one grid "
        "over the recording, each run once and pooled into the report windows it overlaps (recording).")
    pool: Literal["max"] = Field(
        "max", description="waveform: a report window's probabilities from its model windows' (embeddings: mean).")
    n_fft: int = Field(2048, ge=64, le=16384, description="FFT size, in samples.")
    win_length: int | None = Field(None, description="STFT window length in samples (default: n_fft).")
    hop_length: int = Field(512, ge=1, description="STFT hop, in samples.")
    n_mels: int = Field(128, ge=8, le=512, description="Number of mel bands (image height).")
    fmin: float = Field(50.0, ge=0, description="Lowest mel frequency, in Hz.")
    fmax: float = Field(14000.0, gt=0, description="Highest mel frequency, in Hz.")
    mel_scale: Literal["htk", "slaney"] = Field("slaney", description="Mel scale formula.")
    mel_norm: Literal["slaney"] | None = Field("slaney", description="Area normalisation of mel filters.")
    power: float = Field(2.0, description="Exponent of the magnitude spectrum (2 = power).")
    amin: float = Field(1e-10, gt=0, description="Floor before the logarithm.")
    top_db: float | None = Field(80.0, gt=0, description="Dynamic range kept below each window's peak.")
    normalize: Literal["standard", "minmax", "none"] = Field(
        "standard", description="Per-window normalisation: zero mean / unit std, [0, 1], or none."
    )
    norm_eps: float = Field(1e-3, gt=0, description="Floor of the std (or range) in normalisation, dB.")

    @model_validator(mode="after")
    def _check(self) -> FrontendConfig:
        if self.fmax > self.sample_rate / 2:
            raise ValueError(f"fmax={self.fmax} is above the Nyquist frequency {self.sample_rate / 2}")
        if self.fmin >= self.fmax:
            raise ValueError(f"fmin={self.fmin} must be below fmax={self.fmax}")
        if self.win_length is not None and not 1 <= self.win_length <= self.n_fft:
            raise ValueError(f"win_length={self.win_length} must be in [1, n_fft={self.n_fft}]")
        if self.window_samples <= self.n_fft // 2:
            raise ValueError("window_s is too short for n_fft (reflect padding needs n_fft//2 samples)")
        if self.min_partial_s > self.window_s:
            raise ValueError(f"min_partial_s={self.min_partial_s} exceeds window_s={self.window_s}")
        if self.input == "mel" and (self.model_window_s, self.model_hop_s, self.model_grid) != (None, None, "window"):
            raise ValueError("model_window_s, model_hop_s and model_grid are for waveform input (input='waveform')")
        if self.input == "waveform" and self.model_window_samples > self.window_samples:
            raise ValueError(f"model_window_s={self.model_window_s} exceeds window_s={self.window_s}")
        if self.model_grid == "recording" and self.model_hop_samples > self.model_window_samples:
            raise ValueError(f"model_hop_s={self.model_hop_s} exceeds the model window: a recording grid must "
                             "cover the audio")
        return self

    @property
    def window_samples(self) -> int:
        """Samples in one window at ``sample_rate``."""
        return int(round(self.window_s * self.sample_rate))

    @property
    def n_frames(self) -> int:
        """STFT frames in one window (the image width): ``1 + window_samples // hop_length``."""
        return 1 + self.window_samples // self.hop_length

    @property
    def n_freqs(self) -> int:
        """Frequency bins of the one-sided spectrum."""
        return self.n_fft // 2 + 1

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape of one model input image: ``(1, n_mels, n_frames)``."""
        return (1, self.n_mels, self.n_frames)

    @property
    def model_window_samples(self) -> int:
        """Samples in one model window (waveform input; a mel model's window is the report window)."""
        return int(round((self.model_window_s or self.window_s) * self.sample_rate))

    @property
    def model_hop_samples(self) -> int:
        """Samples between model window starts (waveform input; default: the model window)."""
        return int(round((self.model_hop_s or self.model_window_s or self.window_s) * self.sample_rate))

    @property
    def model_offsets(self) -> tuple[int, ...]:
        """Sample offsets of the model windows inside one report window: 0, hop, 2 * hop, ..., the last one
        aligned to the window's end (``(0,)`` for mel input)."""
        window, model = self.window_samples, self.model_window_samples
        if self.input == "mel" or model >= window:
            return (0,)
        hop = self.model_hop_samples
        offsets = list(range(0, window - model + 1, hop))
        if offsets[-1] + model < window:
            offsets.append(window - model)
        return tuple(offsets)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one model input without the batch axis, as the card declares it: ``(1, n_mels, n_frames)``
        (mel) or ``(model_window_samples,)`` (waveform)."""
        return self.image_shape if self.input == "mel" else (self.model_window_samples,)
