"""Deterministic audio encoding through soundfile (libsndfile).

WAV, FLAC and MP3 (LAME) output of libsndfile is a pure function of the samples. OGG is not: libsndfile
gives every logical Ogg stream a random serial number, so two encodings of the same samples differ in
bytes 14-17 (and the CRC) of every page. :func:`encode` rewrites the serial to a fixed value and
recomputes each page's CRC, which makes OGG files byte-identical too. Byte identity holds for one
libsndfile/libvorbis/LAME build; another build may encode differently (the decoded audio stays close).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import soundfile as sf

__all__ = ["FORMATS", "encode"]

# extension -> (libsndfile format, subtype)
FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}

_BLOCK = 65536
OGG_SERIAL = 0x44454D4F  # "DEMO"
_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, init 0, no final xor).

    zlib computes the reflected variant; feeding it bit-reversed bytes with init/xor cancelled and
    bit-reversing the result gives Ogg's, at C speed.
    """
    crc = zlib.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{crc:032b}"[::-1], 2)


def _fix_ogg_serial(data: bytes, serial: int = OGG_SERIAL) -> bytes:
    """Set the stream serial of every Ogg page to ``serial`` and recompute the page CRCs."""
    buf = bytearray(data)
    pos = 0
    while pos < len(buf):
        if buf[pos:pos + 4] != b"OggS":
            raise ValueError(f"not an Ogg page at byte {pos}")
        n_segments = buf[pos + 26]
        size = 27 + n_segments + sum(buf[pos + 27:pos + 27 + n_segments])
        struct.pack_into("<I", buf, pos + 14, serial)
        struct.pack_into("<I", buf, pos + 22, 0)  # the CRC covers the page with its CRC field zeroed
        struct.pack_into("<I", buf, pos + 22, _ogg_crc(bytes(buf[pos:pos + size])))
        pos += size
    return bytes(buf)


def encode(samples: np.ndarray, sample_rate: int, ext: str) -> bytes:
    """Encode mono samples to a file's bytes, deterministically.

    Args:
        samples (np.ndarray): ``(n,)`` float audio in [-1, 1].
        sample_rate (int): rate in Hz.
        ext (str): ``wav`` (PCM 16), ``flac``, ``ogg`` (Vorbis) or ``mp3``.

    Returns:
        bytes: the encoded file.
    """
    if ext not in FORMATS:
        raise ValueError(f"unsupported extension {ext!r}; expected one of {sorted(FORMATS)}")
    fmt, subtype = FORMATS[ext]
    samples = np.asarray(samples, dtype=np.float32)
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", sample_rate, 1, subtype, format=fmt) as snd:
        # libsndfile 1.2's Vorbis encoder crashes (SIGSEGV) on very large single writes: write in blocks
        for start in range(0, len(samples), _BLOCK):
            snd.write(samples[start:start + _BLOCK])
    data = buf.getvalue()
    return _fix_ogg_serial(data) if ext == "ogg" else data
