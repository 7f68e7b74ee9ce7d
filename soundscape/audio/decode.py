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


def _head_and_tail(fh: str | BinaryIO, n: int = 65536) -> tuple[bytes, bytes]:
    """The first and last ``n`` bytes of a file, leaving a file object's position unchanged."""
    if isinstance(fh, str):
        with open(fh, "rb") as f:
            return _head_and_tail(f, n)
    pos = fh.tell()
    try:
        fh.seek(0)
        head = fh.read(n)
        fh.seek(0, io.SEEK_END)
        size = fh.tell()
        fh.seek(max(size - n, 0))
        tail = fh.read(n)
    finally:
        fh.seek(pos)
    return head, tail


def _riff_declared(head: bytes) -> tuple[int, int] | None:
    """``(data_end, frames)`` a RIFF/RF64 WAVE header declares, or None when it cannot tell.

    ``data_end`` is the byte offset where the declared sample data ends; ``frames`` is the declared
    length in frames (data bytes / block align). RF64 sizes come from the ``ds64`` chunk.
    """
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        return None
    ds64_data: int | None = None
    block_align = 0
    offset = 12
    while offset + 8 <= len(head):
        chunk_id = head[offset : offset + 4]
        (chunk_size,) = struct.unpack("<I", head[offset + 4 : offset + 8])
        body = offset + 8
        if chunk_id == b"ds64" and body + 16 <= len(head):
            (ds64_data,) = struct.unpack("<Q", head[body + 8 : body + 16])
        elif chunk_id == b"fmt " and body + 14 <= len(head):
            (block_align,) = struct.unpack("<H", head[body + 12 : body + 14])
        elif chunk_id == b"data":
            if chunk_size == 0xFFFFFFFF and ds64_data is not None:
                chunk_size = ds64_data
            frames = chunk_size // block_align if block_align else 0
            return body + chunk_size, frames
        offset = body + chunk_size + (chunk_size & 1)
    return None


def _ogg_truncated(tail: bytes) -> bool:
    """True when an Ogg file does not end with a complete page flagged end-of-stream.

    Every complete Ogg stream's last page carries the EOS flag (header byte 5, bit 2); a file cut by a
    dying recorder or an interrupted upload ends inside a page or on a page without it. libvorbis and
    libopus quietly decode what is there, so the check is done on the bytes.
    """
    i = tail.rfind(b"OggS")
    while i >= 0:
        if tail[i + 4 : i + 5] == b"\x00" and i + 27 <= len(tail):
            n_seg = tail[i + 26]
            if i + 27 + n_seg > len(tail):
                return True  # cut inside the segment table
            end = i + 27 + n_seg + sum(tail[i + 27 : i + 27 + n_seg])
            if end > len(tail):
                return True  # cut inside the page body
            return not tail[i + 5] & 0x04
        if i + 27 > len(tail):
            return True  # cut inside the last page header
        i = tail.rfind(b"OggS", 0, i)
    return True


def _ogg_frames(head: bytes, tail: bytes, info: AudioInfo) -> int | None:
    """Frames an Ogg Vorbis/Opus stream holds, from its last page's granule position.

    Vorbis granules count samples; Opus granules count 48 kHz samples including the pre-skip of the
    ``OpusHead`` packet. Returns None when the stream is neither or the page cannot be found.
    """
    i = tail.rfind(b"OggS")
    if i < 0 or i + 14 > len(tail):
        return None
    (granule,) = struct.unpack("<q", tail[i + 6 : i + 14])
    if info.subtype == "VORBIS":
        return granule
    if info.subtype == "OPUS":
        j = head.find(b"OpusHead")
        if j < 0 or j + 12 > len(head):
            return None
        (pre_skip,) = struct.unpack("<H", head[j + 10 : j + 12])
        # libopus decodes at the rate the header asks for; allow one 20 ms frame of rounding.
        return int((granule - pre_skip) * info.sample_rate / 48000) - info.sample_rate // 50
    return None


def _has_vbr_header(head: bytes) -> bool:
    """True when an MP3 starts with a Xing/Info/VBRI header, whose frame count is exact."""
    return any(tag in head[:8192] for tag in (b"Xing", b"Info", b"VBRI"))


def _failed_at_end(fh: str | BinaryIO, size: int) -> bool:
    """Decode again from a file object and say whether the decoder failed at the end of the bytes.

    Tells a truncated stream (the decoder runs out of bytes) from a corrupt one (it fails with bytes
    left). Only runs after a decoding error, so the normal path pays nothing.
    """
    if isinstance(fh, str):
        with open(fh, "rb") as f:
            return _failed_at_end(f, size)
    fh.seek(0)
    try:
        with sf.SoundFile(fh) as snd:
            while len(snd.read(65536, dtype="float32")):
                pass
    except (sf.LibsndfileError, RuntimeError):
        return fh.tell() >= size
    return True


_AUDIO_MAGIC = (b"RIFF", b"RF64", b"fLaC", b"OggS", b"FORM")


def _looks_like_audio(head: bytes) -> bool:
    """True when the bytes start like a container libsndfile reads (RIFF, RF64, FLAC, Ogg, AIFF, MP3)."""
    if head[:4] in _AUDIO_MAGIC or head[:3] == b"ID3":
        return True
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0  # MPEG frame sync


def _open(fh: str | BinaryIO, label: str, head: bytes = b"", tail: bytes = b"") -> sf.SoundFile:
    try:
        return sf.SoundFile(fh)
    except sf.LibsndfileError as exc:
        text = str(exc.error_string if hasattr(exc, "error_string") else exc)
        lowered = text.lower()
        if "channel" in lowered and "zero" in lowered:
            code = AudioErrorCode.NO_CHANNELS
        elif "unimplemented" in lowered or "not supported" in lowered or "unsupported" in lowered:
            code = AudioErrorCode.UNSUPPORTED_FORMAT
        elif ("data" in lowered and "chunk" in lowered or "end of file" in lowered
              or head[:4] == b"OggS" and _ogg_truncated(tail)):
            code = AudioErrorCode.TRUNCATED
        elif _looks_like_audio(head):
            code = AudioErrorCode.CORRUPT  # an audio container that libsndfile cannot parse
        elif "not recognised" in lowered or "unknown format" in lowered or "format" in lowered:
            code = AudioErrorCode.NOT_AUDIO
        else:
            code = AudioErrorCode.CORRUPT
        raise AudioError(code, f"{label}: cannot open as audio ({text})") from None
    except (RuntimeError, TypeError, OSError) as exc:
        raise AudioError(AudioErrorCode.CORRUPT, f"{label}: cannot open as audio ({exc})") from None


def _validate_header(snd: sf.SoundFile, label: str, max_duration_s: float | None,
                     declared_frames: int = 0) -> AudioInfo:
    """Header checks, in order: channels, sample rate, duration limit, emptiness.

    ``declared_frames`` is the length the container's own header claims (WAV/RF64 data chunk), which
    libsndfile clips to the bytes present: the duration limit uses the larger of the two, so a header
    declaring ten hours is refused at once whatever follows it.
    """
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
    duration_s = max(info.frames, declared_frames) / info.sample_rate
    if max_duration_s is not None and duration_s > max_duration_s:
        raise AudioError(
            AudioErrorCode.TOO_LONG,
            f"{label}: {duration_s:.1f} s of audio is over the limit of {max_duration_s:g} s",
        )
    if info.frames == 0:
        raise AudioError(AudioErrorCode.EMPTY, f"{label}: the file holds no samples")
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
    head, tail = _head_and_tail(fh)
    with _open(fh, label, head, tail) as snd:
        declared = _riff_declared(head)
        return _validate_header(snd, label, None, declared[1] if declared else 0)


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


# Float files are nominally within [-1, 1]. Samples 10^6 times full scale are garbage, and larger ones
# overflow float32 in the resampler and the power spectrogram (NaN images, NaN probabilities).
MAX_ABS_SAMPLE = 1e6


def _check_finite(samples: np.ndarray, label: str) -> None:
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if not np.isfinite(peak):
        raise AudioError(AudioErrorCode.NON_FINITE, f"{label}: the audio holds NaN or infinite samples")
    if peak > MAX_ABS_SAMPLE:
        raise AudioError(AudioErrorCode.CORRUPT,
                         f"{label}: sample magnitude {peak:.3g} is over {MAX_ABS_SAMPLE:g} x full scale (corrupt data)")


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
    head, tail = _head_and_tail(fh)
    declared = _riff_declared(head)
    with _open(fh, label, head, tail) as snd:
        if snd.format == "OGG" and _ogg_truncated(tail):
            raise AudioError(
                AudioErrorCode.TRUNCATED, f"{label}: the Ogg stream ends without its last page (truncated file)"
            )
        info = _validate_header(snd, label, max_duration_s, declared[1] if declared else 0)
        if declared is not None and declared[0] > size:
            raise AudioError(
                AudioErrorCode.TRUNCATED, f"{label}: the WAV data chunk is cut short (truncated file)"
            )
        target = sample_rate or info.sample_rate
        try:
            samples, decoded = _read_mono(snd, info.sample_rate, target, label)
        except (sf.LibsndfileError, RuntimeError) as exc:
            if _failed_at_end(fh, size):
                raise AudioError(
                    AudioErrorCode.TRUNCATED, f"{label}: the stream ends mid-frame (truncated file: {exc})"
                ) from None
            raise AudioError(AudioErrorCode.CORRUPT, f"{label}: corrupt audio stream ({exc})") from None
    if decoded == 0:
        raise AudioError(AudioErrorCode.EMPTY, f"{label}: the file holds no samples")
    _check_length(info, decoded, head, tail, label)
    return Audio(
        samples=samples,
        sample_rate=target,
        source_sample_rate=info.sample_rate,
        channels=info.channels,
        format=info.format,
    )


_READ_BLOCK = 1 << 18  # frames per read: bounds the multichannel, source-rate buffer to a few MB
# Ogg is read in one call up to this many samples (frames x channels, 256 MB of float32): libvorbis and
# libopus stop a single read at the first damaged page, which _check_length reports as CORRUPT, while
# block reads run past it. Larger Ogg files are read in blocks (memory first).
_OGG_ONE_READ_SAMPLES = 1 << 26


def _read_mono(snd: sf.SoundFile, source_rate: int, target_rate: int, label: str) -> tuple[np.ndarray, int]:
    """Read the rest of ``snd`` block by block as mono float32 at ``target_rate``.

    Memory is the output plus one block: a file that compresses extremely well (e.g. 30 min of 384 kHz
    8-channel FLAC silence, a few MB) would otherwise expand to ``frames x channels`` float32 (22 GB)
    before the downmix. soxr's streaming resampler gives the same samples as a one-shot resample.

    Returns:
        tuple: ``(n',)`` float32 samples and the number of source frames decoded.

    Raises:
        AudioError: NaN or infinite samples. libsndfile errors propagate to the caller.
    """
    block_frames = _READ_BLOCK
    if snd.format == "OGG" and snd.frames * snd.channels <= _OGG_ONE_READ_SAMPLES:
        block_frames = max(snd.frames + 1, 1)
    stream_rs = (None if source_rate == target_rate else
                 soxr.ResampleStream(source_rate, target_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY))
    out: list[np.ndarray] = []
    decoded = 0
    while True:
        block = snd.read(block_frames, dtype="float32", always_2d=True)
        last = len(block) < block_frames
        mono = _downmix(block) if len(block) else np.zeros(0, np.float32)
        _check_finite(mono, label)
        decoded += len(block)
        if stream_rs is not None:
            mono = stream_rs.resample_chunk(np.ascontiguousarray(mono), last=last)
        if len(mono):
            out.append(np.ascontiguousarray(mono, dtype=np.float32))
        if last:
            break
    if not out:
        return np.zeros(0, np.float32), decoded
    return (out[0] if len(out) == 1 else np.concatenate(out)), decoded


def _check_length(info: AudioInfo, decoded: int, head: bytes, tail: bytes, label: str) -> None:
    """Compare the decoded length with the header's; a stream that stops early is an error.

    Policy: PCM containers and FLAC allow 4096 frames of slack; MP3 with a Xing/Info/VBRI header (exact
    frame count) allows none, MP3 without one (length estimated from the bitrate) 1 %; both raise
    ``TRUNCATED`` (libmpg123 skips damaged frames, so a shortfall may also be damage: the message says
    so). Ogg files whose last page is intact but which decode short lost pages to CRC failures in the
    middle: ``CORRUPT`` (the expected length is the last page's granule position, since libsndfile's
    own count stops at the first damaged page).
    """
    if info.format == "OGG":
        expected = _ogg_frames(head, tail, info)
        if expected is not None and decoded < expected:
            raise AudioError(
                AudioErrorCode.CORRUPT,
                f"{label}: damaged Ogg pages: decoded {decoded} of {expected} frames (corrupt stream)",
            )
        return
    if info.format == "MP3":
        slack = 0 if _has_vbr_header(head) else info.frames // 100
    elif info.format in ("FLAC", "WAV", "WAVEX", "RF64", "W64", "AIFF"):
        slack = 4096
    else:
        return
    if decoded < info.frames - slack:
        raise AudioError(
            AudioErrorCode.TRUNCATED,
            f"{label}: stream ended after {decoded} of {info.frames} frames (truncated or damaged file)",
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
    head, tail = _head_and_tail(fh)
    snd = _open(fh, label, head, tail)
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
