"""One reader: ``decode`` is ``stream`` read to the end, so both accept and refuse the same bytes alike.

Before, ``stream`` (batch analysis) skipped the length, Ogg end-of-stream and WAV declared-length checks
and called every decoder error ``corrupt_audio``, so a truncated FLAC was ``truncated_audio`` from the
service and ``corrupt_audio`` from ``soundscape analyze``.
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from soundscape.audio import AudioError, AudioErrorCode, AudioStream, decode, stream
from tests.reliability.payloads import SEEDS, extremes

E = AudioErrorCode


def tone(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.4 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def encode(data: np.ndarray, sr: int, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=sr, channels=data.shape[1], format=fmt, subtype=subtype) as f:
        for a in range(0, len(data), sr):
            f.write(data[a : a + sr])
    return buf.getvalue()


def outcome(fn) -> str | int:
    """The error code, or the number of samples when it decodes."""
    try:
        return fn()
    except AudioError as exc:
        return str(exc.code)


def by_decode(data: bytes) -> str | int:
    return outcome(lambda: len(decode(data, sample_rate=16000, max_duration_s=120).samples))


def by_stream(data: bytes, block_s: float) -> str | int:
    return outcome(lambda: sum(len(b) for b in stream(data, sample_rate=16000, block_s=block_s,
                                                         max_duration_s=120)))


ENCODED = {
    "flac": encode(tone(12.0, 32000), 32000, "FLAC", "PCM_16"),
    "vorbis": encode(tone(12.0, 32000), 32000, "OGG", "VORBIS"),
    "opus": encode(tone(12.0, 48000), 48000, "OGG", "OPUS"),
    "mp3": encode(tone(12.0, 32000), 32000, "MP3", "MPEG_LAYER_III"),
    "wav": encode(tone(12.0, 22050, 2), 22050, "WAV", "PCM_16"),
}


def damaged(data: bytes, where: float) -> bytes:
    out = bytearray(data)
    at = int(len(out) * where)
    out[at : at + 200] = np.random.default_rng(1).bytes(200)
    return bytes(out)


CORPUS: dict[str, bytes] = {
    **{f"extreme-{k}": v for k, v in extremes().items() if k not in ("rate_384k", "two_hours_declared")},
    **{f"seed-{k}": v for k, v in SEEDS.items()},
    **{f"cut-{k}-{f}": v[: int(len(v) * f)] for k, v in ENCODED.items() for f in (0.3, 0.9)},
    **{f"damaged-{k}-{w}": damaged(v, w) for k, v in ENCODED.items() for w in (0.3, 0.5, 0.7)},
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_decode_and_stream_agree_on_every_file(name):
    """Same code (or same length) whatever the entry point and whatever the block size."""
    data = CORPUS[name]
    want = by_decode(data)
    for block_s in (0.37, 5.0, 60.0):
        assert by_stream(data, block_s) == want, (name, block_s)


@pytest.mark.parametrize(("name", "code"), [
    ("cut-flac-0.3", E.TRUNCATED), ("cut-flac-0.9", E.TRUNCATED), ("cut-wav-0.3", E.TRUNCATED),
    ("cut-vorbis-0.9", E.TRUNCATED), ("cut-opus-0.3", E.TRUNCATED), ("cut-mp3-0.9", E.TRUNCATED),
    ("damaged-flac-0.5", E.CORRUPT), ("damaged-vorbis-0.3", E.CORRUPT), ("damaged-vorbis-0.7", E.CORRUPT),
    ("damaged-opus-0.3", E.CORRUPT), ("damaged-opus-0.5", E.CORRUPT), ("damaged-opus-0.7", E.CORRUPT),
])
def test_the_code_is_the_right_one(name, code):
    assert by_decode(CORPUS[name]) == str(code)


@pytest.mark.parametrize("key", ["vorbis", "opus"])
def test_damaged_ogg_pages_are_found_whatever_the_read_size(key):
    """libvorbis/libopus skip a page that fails its CRC: depending on how reads fall, a damaged file used to
    decode to full length. Every page's checksum is verified, so it is CORRUPT at any block size."""
    for where in (0.2, 0.4, 0.6, 0.8):
        data = damaged(ENCODED[key], where)
        for block_s in (0.1, 1.0, 8.0, 60.0):
            assert by_stream(data, block_s) == "corrupt_audio", (where, block_s)


@pytest.mark.parametrize("key", sorted(ENCODED))
def test_stream_blocks_join_to_exactly_the_decoded_samples(key):
    data = ENCODED[key]
    whole = decode(data, sample_rate=32000).samples
    for block_s in (0.5, 3.3, 60.0):
        blocks = list(stream(data, sample_rate=32000, block_s=block_s))
        np.testing.assert_array_equal(np.concatenate(blocks), whole)


def test_header_problems_raise_before_the_first_block_and_facts_are_known():
    with pytest.raises(AudioError) as err:
        stream(extremes()["two_hours_declared"], sample_rate=16000, max_duration_s=120)
    assert err.value.code == E.TOO_LONG
    reader = AudioStream(ENCODED["wav"], sample_rate=16000)
    assert (reader.info.sample_rate, reader.info.channels, reader.info.format) == (22050, 2, "WAV")
    assert reader.samples_out == 0
    n = sum(len(b) for b in reader)
    assert n == reader.samples_out == 12 * 16000 and reader.duration_s == 12.0


def test_importing_the_store_loads_no_audio_io():
    code = ("import model_store, sys; bad = [m for m in ('soundfile', 'soxr', 'scipy') if m in sys.modules]; "
            "sys.exit(str(bad) if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
