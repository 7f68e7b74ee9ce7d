"""The one audio reader: files and bytes to mono float32 at the model's sample rate, block by block.

libsndfile (through soundfile) reads WAV (PCM 8/16/24/32-bit, float, mu-law, WAVEX, RF64), FLAC,
OGG/Vorbis, OGG/Opus and MP3; soxr resamples. Every failure is an :class:`AudioError` with a stable code.

:class:`AudioStream` is the reader and holds every check: the header's (channels, rate, declared length,
emptiness, a WAV data chunk cut short, an Ogg stream without its last page, damaged Ogg pages) before the
first block, the stream's (NaN/inf or absurd samples, a decoder error at the end of the bytes = truncated,
elsewhere = corrupt) while reading, and the decoded length against the header's once the last block is
out. :func:`decode` is that stream read to the end and joined; :func:`stream` hands out its blocks. Every
entry point (the service, ``soundscape analyze``, training's cache) therefore validates alike and raises
the same error codes for the same bytes.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError, AudioErrorCode

__all__ = [
    "AUDIO_EXTENSIONS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "Audio",
    "AudioInfo",
    "AudioSource",
    "AudioStream",
    "decode",
    "probe",
    "resample",
    "stream",
]

MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 384_000
RESAMPLE_QUALITY = "HQ"
# File extensions of the containers the reader handles: what folder walks pick up (``soundscape analyze``;
# training's clip discovery is to switch to this list too). The bytes decide, never the extension: a file
# named explicitly is read whatever its name.
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".w64", ".rf64"})

AudioSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO
# A target rate in Hz, or a function of the file's own rate (read from its header) giving it: how a mel model's
# pipeline decodes a file at its own rate when its front end can run there (``WindowPipeline.decode_rate``).
TargetRate = int | Callable[[int], int] | None


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


_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _ogg_crc(page: bytes) -> int:
    """Ogg's page checksum (CRC-32, polynomial 0x04C11DB7, not reflected, initial value 0, no final XOR).

    zlib computes the reflected CRC of the same polynomial: fed the bytes bit-reversed, with its initial and
    final inversions cancelled, it gives the bit-reversed Ogg CRC (C speed, no Python loop over bytes).
    """
    raw = zlib.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{raw:032b}"[::-1], 2)


def _ogg_damage(fh: str | BinaryIO) -> tuple[AudioErrorCode, str] | None:
    """Walk every Ogg page and check its checksum and sequence number; None when all are intact.

    libvorbis and libopus skip a page that fails its CRC and decode on, so the decoded length alone does not
    reveal damage (it depends on how reads fall on the pages). Reads one page at a time, so memory stays at
    one page (<= 64 KB). Returns ``CORRUPT`` for a damaged page, a page out of sequence or bytes that are not
    a page, ``TRUNCATED`` for a file that ends inside a page.
    """
    if isinstance(fh, str):
        with open(fh, "rb") as f:
            return _ogg_damage(f)
    pos = fh.tell()
    try:
        fh.seek(0)
        offset = 0
        sequence: dict[int, int] = {}
        open_streams: set[int] = set()
        while True:
            header = fh.read(27)
            if not header:
                return None
            if len(header) < 27 or header[:4] != b"OggS":
                if header[:4] == b"OggS" or b"OggS".startswith(header):
                    return AudioErrorCode.TRUNCATED, f"the file ends inside the Ogg page header at byte {offset}"
                if sequence and not open_streams:
                    return None  # bytes after every stream's last page: nothing is decoded from them
                return AudioErrorCode.CORRUPT, f"the bytes at offset {offset} are not an Ogg page"
            n_seg = header[26]
            lacing = fh.read(n_seg)
            body_len = sum(lacing)
            body = fh.read(body_len)
            if len(lacing) < n_seg or len(body) < body_len:
                return AudioErrorCode.TRUNCATED, f"the file ends inside the Ogg page at byte {offset}"
            (stored,) = struct.unpack("<I", header[22:26])
            if _ogg_crc(header[:22] + b"\0\0\0\0" + header[26:] + lacing + body) != stored:
                return AudioErrorCode.CORRUPT, f"the Ogg page at byte {offset} fails its checksum"
            serial, seq = struct.unpack("<II", header[14:22])
            if serial in sequence and seq != sequence[serial] + 1:
                return AudioErrorCode.CORRUPT, f"Ogg page {seq} follows page {sequence[serial]} (pages lost)"
            sequence[serial] = seq
            if header[5] & 0x02:
                open_streams.add(serial)
            if header[5] & 0x04:
                open_streams.discard(serial)
            offset += 27 + n_seg + body_len
    finally:
        fh.seek(pos)


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


class AudioStream:
    """An audio file read block by block as mono float32 at ``sample_rate``, with every check.

    Opening runs the header checks, so a bad header raises here, before any sample is read; iterating
    yields blocks of at most ``block_s`` seconds (at ``sample_rate``) and raises for problems in the
    stream, including, after the last block, a decoded length short of the header's. The file is always
    read 2^18 source frames at a time (memory stays at one read whatever the channels, rate and length)
    through one streaming resampler, so the samples do not depend on ``block_s``, bit for bit: decoders
    such as libsndfile's MP3 reader give slightly different samples for different read sizes. Single use;
    closes itself when the iteration ends or fails (``close()`` or ``with`` otherwise).

    Args:
        source: a path, the file's bytes, or a seekable binary file object.
        sample_rate (int or callable, optional): target rate in Hz, or a function of the file's own rate that
            gives it (called once, after the header checks). (Default: the file's own rate)
        block_s (float, optional): longest block yielded, in seconds. (Default: one read, 2^18 source frames)
        max_duration_s (float, optional): refuse files longer than this, from the header. (Default: no limit)
        name (str, optional): name used in error messages. (Default: the path, or ``<upload>``)

    Attributes:
        info (AudioInfo): the header's facts (the file's own rate, channels, frames, container).
        sample_rate (int): rate of the yielded blocks.
        frames_read (int): source frames decoded so far.
        samples_out (int): samples yielded so far (at ``sample_rate``).

    Raises:
        AudioError: empty, not audio, unsupported encoding, truncated or corrupt stream, NaN/inf samples,
            too long, no channels, or a sample rate outside 8-384 kHz.
    """

    def __init__(self, source: AudioSource, *, sample_rate: TargetRate = None, block_s: float | None = None,
                 max_duration_s: float | None = None, name: str | None = None) -> None:
        self.label = label = _describe(source, name)
        self._fh = fh = _as_file(source)
        self._size = size = _size_of(fh)
        if size == 0:
            raise AudioError(AudioErrorCode.EMPTY, f"{label}: the file is empty (0 bytes)")
        self._head, self._tail = head, tail = _head_and_tail(fh)
        declared = _riff_declared(head)
        self._snd = snd = _open(fh, label, head, tail)
        try:
            if snd.format == "OGG" and _ogg_truncated(tail):
                raise AudioError(AudioErrorCode.TRUNCATED,
                                 f"{label}: the Ogg stream ends without its last page (truncated file)")
            self.info = info = _validate_header(snd, label, max_duration_s, declared[1] if declared else 0)
            if declared is not None and declared[0] > size:
                raise AudioError(AudioErrorCode.TRUNCATED, f"{label}: the WAV data chunk is cut short (truncated file)")
            if info.format == "OGG" and (damage := _ogg_damage(fh)) is not None:
                code, why = damage
                kind = "truncated file" if code == AudioErrorCode.TRUNCATED else "corrupt stream"
                raise AudioError(code, f"{label}: {why} ({kind})")
            if callable(sample_rate):  # the rate for this file's own (e.g. WindowPipeline.decode_rate)
                sample_rate = int(sample_rate(info.sample_rate))
        except BaseException:
            snd.close()
            raise
        self.sample_rate = sample_rate or info.sample_rate
        self._block = None if block_s is None else max(int(block_s * self.sample_rate), 1)
        self.frames_read = 0
        self.samples_out = 0

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._snd.close()

    @property
    def duration_s(self) -> float:
        """Seconds yielded so far (the whole file's once the iteration has ended)."""
        return self.samples_out / self.sample_rate

    def __iter__(self) -> Iterator[np.ndarray]:
        snd, info, label = self._snd, self.info, self.label
        n = _READ_BLOCK
        resampler = (None if info.sample_rate == self.sample_rate else
                     soxr.ResampleStream(info.sample_rate, self.sample_rate, 1, dtype="float32",
                                         quality=RESAMPLE_QUALITY))
        try:
            while True:
                try:
                    block = snd.read(n, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as exc:
                    if _failed_at_end(self._fh, self._size):
                        raise AudioError(AudioErrorCode.TRUNCATED,
                                         f"{label}: the stream ends mid-frame (truncated file: {exc})") from None
                    raise AudioError(AudioErrorCode.CORRUPT, f"{label}: corrupt audio stream ({exc})") from None
                last = len(block) < n
                mono = _downmix(block) if len(block) else np.zeros(0, np.float32)
                _check_finite(mono, label)
                self.frames_read += len(block)
                if resampler is not None:
                    mono = resampler.resample_chunk(np.ascontiguousarray(mono), last=last)
                mono = np.ascontiguousarray(mono, dtype=np.float32)
                step = self._block or len(mono)
                for a in range(0, len(mono), step):
                    out = mono[a : a + step]
                    self.samples_out += len(out)
                    yield out
                if last:
                    break
            if self.frames_read == 0:
                raise AudioError(AudioErrorCode.EMPTY, f"{label}: the file holds no samples")
            _check_length(info, self.frames_read, self._head, self._tail, label)
        finally:
            self.close()


def stream(source: AudioSource, *, sample_rate: TargetRate, block_s: float = 60.0, max_duration_s: float | None = None,
           name: str | None = None) -> AudioStream:
    """Decode a long file block by block, in bounded memory: the :class:`AudioStream` of ``source``.

    Each yielded block is mono float32 at ``sample_rate``; concatenated they equal :func:`decode`'s samples
    exactly, and the same checks run (header problems raise here, before the first block).

    Args:
        source: a path, the file's bytes, or a seekable binary file object.
        sample_rate (int or callable): target rate in Hz, or a function of the file's rate giving it.
        block_s (float): longest block yielded, in seconds (reads are 2^18 source frames). (Default: ``60.0``)
        max_duration_s (float, optional): refuse files longer than this. (Default: no limit)
        name (str, optional): name used in error messages.
    """
    return AudioStream(source, sample_rate=sample_rate, block_s=block_s, max_duration_s=max_duration_s, name=name)


def decode(source: AudioSource, *, sample_rate: TargetRate = None, max_duration_s: float | None = None,
           name: str | None = None) -> Audio:
    """Decode audio to mono float32, resampled to ``sample_rate``: the :class:`AudioStream` read to the end.

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
        AudioError: as :class:`AudioStream`.
    """
    reader = AudioStream(source, sample_rate=sample_rate, max_duration_s=max_duration_s, name=name)
    blocks = list(reader)
    samples = blocks[0] if len(blocks) == 1 else np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    info = reader.info
    return Audio(samples=samples, sample_rate=reader.sample_rate, source_sample_rate=info.sample_rate,
                 channels=info.channels, format=info.format)


# Frames per read: bounds the multichannel, source-rate buffer to a few MB (8 channels at 384 kHz: 8 MB).
_READ_BLOCK = 1 << 18


def _check_length(info: AudioInfo, decoded: int, head: bytes, tail: bytes, label: str) -> None:
    """Compare the decoded length with the header's; a stream that stops early is an error.

    Policy: PCM containers and FLAC allow 4096 frames of slack; MP3 with a Xing/Info/VBRI header (exact
    frame count) allows none, MP3 without one (length estimated from the bitrate) 1 %; both raise
    ``TRUNCATED`` (libmpg123 skips damaged frames, so a shortfall may also be damage: the message says
    so). Ogg files (every page already checked) that decode short of their last page's granule position
    are ``CORRUPT``.
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


def is_path(source: AudioSource) -> bool:
    """True when ``source`` names a file rather than holding its bytes."""
    return isinstance(source, str | Path | os.PathLike)
