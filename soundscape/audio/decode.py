"""Decoding audio files and bytes into mono float32 at the model's sample rate.

libsndfile (through soundfile) reads WAV (PCM 8/16/24/32-bit, float, mu-law, WAVEX, RF64), FLAC,
OGG/Vorbis, OGG/Opus and MP3; soxr resamples. Every failure is an :class:`AudioError` with a stable code.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError, AudioErrorCode

__all__ = [
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "Audio",
    "AudioInfo",
    "AudioSource",
    "decode",
    "probe",
    "resample",
    "stream",
]

MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 384_000
RESAMPLE_QUALITY = "HQ"

AudioSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, read without decoding the samples."""

    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True)
class Audio:
    """Decoded mono audio.

    Attributes:
        samples (np.ndarray): ``(n,)`` float32 mono samples at ``sample_rate``.
        sample_rate (int): rate of ``samples`` (the target rate after resampling).
        source_sample_rate (int): rate stored in the file.
        channels (int): channel count in the file (before the downmix).
        format (str): container format reported by libsndfile, e.g. ``WAV``, ``FLAC``, ``OGG``, ``MP3``.
    """

    samples: np.ndarray
    sample_rate: int
    source_sample_rate: int
    channels: int
    format: str

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def _describe(source: AudioSource, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return "<upload>"


def _as_file(source: AudioSource) -> str | BinaryIO:
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(source))
    if isinstance(source, os.PathLike):
        return os.fspath(source)
    return source


def _size_of(fh: str | BinaryIO) -> int:
    if isinstance(fh, str):
        return os.path.getsize(fh)
    pos = fh.tell()
    fh.seek(0, io.SEEK_END)
    size = fh.tell()
    fh.seek(pos)
    return size


def _riff_truncated(fh: str | BinaryIO, size: int) -> bool:
    """True when a RIFF/WAVE file declares more sample data than it holds.

    libsndfile quietly shortens such files to what is present; a recorder that died mid-write makes
    them, and their last window would be silently cut, so they are reported instead.
    """
    if isinstance(fh, str):
        with open(fh, "rb") as f:
            head = f.read(65536)
    else:
        pos = fh.tell()
        head = fh.read(65536)
        fh.seek(pos)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return False  # RF64 and others: libsndfile's own checks apply
    offset = 12
    while offset + 8 <= len(head):
        chunk_id = head[offset : offset + 4]
        (chunk_size,) = struct.unpack("<I", head[offset + 4 : offset + 8])
        if chunk_id == b"data":
            return offset + 8 + chunk_size > size
        offset += 8 + chunk_size + (chunk_size & 1)
    return False


def _open(fh: str | BinaryIO, label: str) -> sf.SoundFile:
    try:
        return sf.SoundFile(fh)
    except sf.LibsndfileError as exc:
        text = str(exc.error_string if hasattr(exc, "error_string") else exc)
        lowered = text.lower()
        if "unimplemented" in lowered or "not supported" in lowered or "unsupported" in lowered:
            code = AudioErrorCode.UNSUPPORTED_FORMAT
        elif "data" in lowered and "chunk" in lowered or "end of file" in lowered:
            code = AudioErrorCode.TRUNCATED
        elif "not recognised" in lowered or "unknown format" in lowered or "format" in lowered:
            code = AudioErrorCode.NOT_AUDIO
        else:
            code = AudioErrorCode.CORRUPT
        raise AudioError(code, f"{label}: cannot open as audio ({text})") from None
    except (RuntimeError, TypeError, OSError) as exc:
        raise AudioError(AudioErrorCode.CORRUPT, f"{label}: cannot open as audio ({exc})") from None


def _validate_header(snd: sf.SoundFile, label: str, max_duration_s: float | None) -> AudioInfo:
    info = AudioInfo(
        sample_rate=int(snd.samplerate),
        channels=int(snd.channels),
        frames=max(int(snd.frames), 0),
        format=str(snd.format),
        subtype=str(snd.subtype),
    )
    if info.channels < 1:
        raise AudioError(AudioErrorCode.NO_CHANNELS, f"{label}: the file has no audio channels")
    if not MIN_SAMPLE_RATE <= info.sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            AudioErrorCode.BAD_SAMPLE_RATE,
            f"{label}: sample rate {info.sample_rate} Hz is outside "
            f"[{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz",
        )
    if info.frames == 0:
        raise AudioError(AudioErrorCode.EMPTY, f"{label}: the file holds no samples")
    if max_duration_s is not None and info.duration_s > max_duration_s:
        raise AudioError(
            AudioErrorCode.TOO_LONG,
            f"{label}: {info.duration_s:.1f} s of audio is over the limit of {max_duration_s:g} s",
        )
    return info


def probe(source: AudioSource, *, name: str | None = None) -> AudioInfo:
    """Read a file's header (rate, channels, length) without decoding its samples.

    Args:
        source: a path, the file's bytes, or a seekable binary file object.
        name (str, optional): name used in error messages. (Default: the path, or ``<upload>``)

    Returns:
        AudioInfo: the header's facts.

    Raises:
        AudioError: when the source is not readable audio.
    """
    label = _describe(source, name)
    fh = _as_file(source)
    if _size_of(fh) == 0:
        raise AudioError(AudioErrorCode.EMPTY, f"{label}: the file is empty (0 bytes)")
    with _open(fh, label) as snd:
        return _validate_header(snd, label, None)


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample mono float32 samples with soxr (``HQ``), returning float32 ``(n',)``."""
    if source_rate == target_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    out = soxr.resample(np.ascontiguousarray(samples, dtype=np.float32), source_rate, target_rate,
                        quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(out, dtype=np.float32)


def _downmix(block: np.ndarray) -> np.ndarray:
    """``(n, channels)`` -> ``(n,)`` by averaging channels."""
    if block.shape[1] == 1:
        return block[:, 0]
    return block.mean(axis=1, dtype=np.float32)


def _check_finite(samples: np.ndarray, label: str) -> None:
    if not np.isfinite(samples).all():
        raise AudioError(AudioErrorCode.NON_FINITE, f"{label}: the audio holds NaN or infinite samples")


def decode(
    source: AudioSource,
    *,
    sample_rate: int | None = None,
    max_duration_s: float | None = None,
    name: str | None = None,
) -> Audio:
    """Decode audio to mono float32, resampled to ``sample_rate``.

    The duration limit is checked from the header before any sample is decoded, so an over-long upload
    costs almost nothing.

    Args:
        source: a path, the file's bytes, or a seekable binary file object.
        sample_rate (int, optional): target rate in Hz. (Default: the file's own rate)
        max_duration_s (float, optional): refuse files longer than this. (Default: no limit)
        name (str, optional): name used in error messages. (Default: the path, or ``<upload>``)

    Returns:
        Audio: ``samples`` of shape ``(n,)``, float32, at ``sample_rate``.

    Raises:
        AudioError: empty, not audio, unsupported encoding, truncated or corrupt stream, NaN/inf
            samples, too long, no channels, or a sample rate outside 8-384 kHz.
    """
    label = _describe(source, name)
    fh = _as_file(source)
    size = _size_of(fh)
    if size == 0:
        raise AudioError(AudioErrorCode.EMPTY, f"{label}: the file is empty (0 bytes)")
    with _open(fh, label) as snd:
        info = _validate_header(snd, label, max_duration_s)
        if snd.format in ("WAV", "WAVEX") and _riff_truncated(fh, size):
            raise AudioError(
                AudioErrorCode.TRUNCATED, f"{label}: the WAV data chunk is cut short (truncated file)"
            )
        try:
            data = snd.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(AudioErrorCode.CORRUPT, f"{label}: corrupt audio stream ({exc})") from None
    if len(data) == 0:
        raise AudioError(AudioErrorCode.EMPTY, f"{label}: the file holds no samples")
    # A stream that ends well before its header says is truncated (a few frames of slack for codecs
    # whose header length is an estimate, e.g. MP3 padding).
    if info.format in ("FLAC", "WAV", "WAVEX", "RF64", "W64", "AIFF") and len(data) < info.frames - 4096:
        raise AudioError(
            AudioErrorCode.TRUNCATED,
            f"{label}: stream ended after {len(data)} of {info.frames} frames (truncated file)",
        )
    mono = _downmix(data)
    _check_finite(mono, label)
    target = sample_rate or info.sample_rate
    return Audio(
        samples=resample(mono, info.sample_rate, target),
        sample_rate=target,
        source_sample_rate=info.sample_rate,
        channels=info.channels,
        format=info.format,
    )


def stream(
    source: AudioSource,
    *,
    sample_rate: int,
    block_s: float = 60.0,
    max_duration_s: float | None = None,
    name: str | None = None,
) -> Iterator[np.ndarray]:
    """Decode a long file block by block, in bounded memory.

    Each yielded block is mono float32 at ``sample_rate``. Blocks join seamlessly (one streaming
    resampler runs over the whole file), so concatenating them equals :func:`decode` up to resampler
    edge effects of a few samples. Memory stays at about ``block_s`` seconds of audio whatever the file
    length.

    Args:
        source: a path, the file's bytes, or a seekable binary file object.
        sample_rate (int): target rate in Hz.
        block_s (float): seconds of source audio read at a time. (Default: ``60.0``)
        max_duration_s (float, optional): refuse files longer than this. (Default: no limit)
        name (str, optional): name used in error messages.

    Yields:
        np.ndarray: ``(n,)`` float32 blocks.

    Raises:
        AudioError: as :func:`decode`, raised before the first block for header problems.
    """
    label = _describe(source, name)
    fh = _as_file(source)
    if _size_of(fh) == 0:
        raise AudioError(AudioErrorCode.EMPTY, f"{label}: the file is empty (0 bytes)")
    snd = _open(fh, label)
    try:
        info = _validate_header(snd, label, max_duration_s)
        resampler = (
            None
            if info.sample_rate == sample_rate
            else soxr.ResampleStream(info.sample_rate, sample_rate, 1, dtype="float32",
                                     quality=RESAMPLE_QUALITY)
        )
        block_frames = max(int(block_s * info.sample_rate), 1)
        while True:
            try:
                data = snd.read(block_frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(AudioErrorCode.CORRUPT, f"{label}: corrupt audio stream ({exc})") from None
            last = len(data) < block_frames
            mono = _downmix(data) if len(data) else np.zeros(0, np.float32)
            _check_finite(mono, label)
            if resampler is not None:
                mono = resampler.resample_chunk(np.ascontiguousarray(mono), last=last)
            if len(mono):
                yield np.ascontiguousarray(mono, dtype=np.float32)
            if last:
                break
    finally:
        snd.close()


def is_path(source: AudioSource) -> bool:
    """True when ``source`` names a file rather than holding its bytes."""
    return isinstance(source, str | Path | os.PathLike)
