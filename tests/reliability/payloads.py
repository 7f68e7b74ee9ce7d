"""Malformed and extreme audio files, built from real encoders and hand-written headers."""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf
from hypothesis import strategies as st

# Every error code the service documents for POST /v1/predict (issue 4 and README "Operating it").
DOCUMENTED_4XX = {
    400: {"empty_audio", "not_audio", "unsupported_format", "truncated_audio", "corrupt_audio",
          "non_finite_samples", "no_channels", "unsupported_sample_rate", "bad_multipart"},
    413: {"upload_too_large", "audio_too_long", "too_many_files"},
    415: {"unsupported_media_type"},
    422: {"invalid_request", "invalid_option", "unknown_species", "missing_file"},
}


def encode(data: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    """File bytes of ``(frames, channels)`` float samples."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=rate, channels=data.shape[1], format=fmt, subtype=subtype) as f:
        for a in range(0, len(data), 1 << 16):
            f.write(data[a : a + (1 << 16)])
    return buf.getvalue()


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    sig = 0.3 * np.sin(2 * np.pi * 1000 * t)
    return np.repeat(sig[:, None], channels, axis=1).astype(np.float32)


def wav_header(*, rate: int = 16000, channels: int = 1, bits: int = 16, data_bytes: int = 0, fmt_tag: int = 1,
               body: bytes = b"") -> bytes:
    """A RIFF/WAVE header declaring ``data_bytes`` of samples, followed by ``body``."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    riff_size = min(4 + 8 + len(fmt) + 8 + data_bytes, 0xFFFFFFFF)
    return (b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", min(data_bytes, 0xFFFFFFFF)) + body)


# Valid files of several containers, small enough to fuzz quickly (2 s each).
SEEDS: dict[str, bytes] = {
    "wav16": encode(tone(2.0, 16000), 16000),
    "wav_float": encode(tone(2.0, 22050, 2), 22050, "WAV", "FLOAT"),
    "flac": encode(tone(2.0, 32000), 32000, "FLAC", "PCM_16"),
    "ogg": encode(tone(2.0, 32000), 32000, "OGG", "VORBIS"),
}


def nonfinite_wav(value: float) -> bytes:
    data = tone(6.0, 16000)
    data[1000:1010] = value
    return encode(data, 16000, "WAV", "FLOAT")


# Named extremes: (bytes, content type). Each is either a 200 or a documented 4xx.
def extremes() -> dict[str, bytes]:
    return {
        "zero_length": b"",
        "one_sample": encode(np.zeros((1, 1), np.float32), 16000),
        "header_only": wav_header(data_bytes=0),
        "nan_float_wav": nonfinite_wav(float("nan")),
        "inf_float_wav": nonfinite_wav(float("inf")),
        "huge_float_wav": encode(tone(6.0, 16000) * 1e30, 16000, "WAV", "FLOAT"),
        "eight_channels": encode(tone(6.0, 16000, 8), 16000),
        "rate_384k": encode(tone(3.0, 384000), 384000),
        "rate_over_384k": wav_header(rate=400_000, data_bytes=800_000, body=bytes(800_000)),
        "rate_1hz": wav_header(rate=1, data_bytes=32, body=bytes(32)),
        "rate_zero": wav_header(rate=0, data_bytes=32, body=bytes(32)),
        "two_hours_declared": wav_header(data_bytes=2 * 3600 * 16000 * 2, body=bytes(64_000)),
        "four_gb_declared": wav_header(data_bytes=0xFFFFFFFF, body=bytes(64_000)),
        "zero_channels": wav_header(channels=0, data_bytes=32, body=bytes(32)),
        "65535_channels": wav_header(channels=65535, data_bytes=1 << 20, body=bytes(1 << 16)),
        "bits_zero": wav_header(bits=0, data_bytes=32, body=bytes(32)),
        "unknown_format_tag": wav_header(fmt_tag=0x1234, data_bytes=32, body=bytes(32)),
        "riff_only": b"RIFF",
        "ogg_magic_only": b"OggS" + bytes(100),
        "flac_magic_only": b"fLaC" + bytes(100),
        "id3_only": b"ID3" + bytes(200),
        "text": b"this is not audio\n" * 50,
    }


@st.composite
def mangled_audio(draw) -> bytes:
    """A valid file cut at a random point, with random bytes flipped in its first 256 bytes, or random bytes."""
    kind = draw(st.sampled_from(["truncate", "flip_header", "random", "splice"]))
    if kind == "random":
        return draw(st.binary(min_size=0, max_size=4096))
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if kind == "splice":
        at = draw(st.integers(0, len(data)))
        return bytes(data[:at]) + draw(st.binary(min_size=1, max_size=512)) + bytes(data[at:])
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, min(255, len(data) - 1)))
        data[i] = draw(st.integers(0, 255))
    return bytes(data)
