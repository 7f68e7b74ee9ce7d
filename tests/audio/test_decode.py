"""Decoding: every format, rate and channel count the service accepts, and every way input goes bad.

All inputs are real files: written here with soundfile into ``tmp_path``, crafted byte by byte where
libsndfile cannot write them, or taken from the 22 WAV fixtures shipped in scipy's wheel.
"""

from __future__ import annotations

import io
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import scipy
import soundfile as sf

from soundscape.audio import AudioError, AudioErrorCode, decode, probe

E = AudioErrorCode
SCIPY_DATA = Path(scipy.__file__).parent / "io" / "tests" / "data"


def tone(freq: float, seconds: float, sr: int, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    """``(n, channels)`` float32 sine; channel c is scaled by ``(c + 1) / channels``."""
    t = np.arange(int(round(seconds * sr))) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    return np.stack([x * (c + 1) / channels for c in range(channels)], axis=1).astype(np.float32)


def encode(data: np.ndarray, sr: int, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def dominant_freq(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


def wav_header(channels: int = 1, sr: int = 32000, bits: int = 16, data_bytes: int = 0) -> bytes:
    """A canonical 44-byte PCM WAV header declaring ``data_bytes`` of samples."""
    align = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sr, sr * align, align, bits)
            + b"data" + struct.pack("<I", data_bytes))


def rf64_header(sr: int = 32000, data_bytes: int = 0) -> bytes:
    """An RF64 header (sizes in the ds64 chunk) declaring ``data_bytes`` of mono 16-bit samples."""
    ds64 = b"ds64" + struct.pack("<IQQQI", 28, 36 + 36 + data_bytes, data_bytes, data_bytes // 2, 0)
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sr, sr * 2, 2, 16)
    return b"RF64" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + ds64 + fmt + b"data" + struct.pack("<I", 0xFFFFFFFF)


# -- formats ---------------------------------------------------------------------------------------

WAV_SUBTYPES = ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"]
# Lossy codecs and 8-bit encodings are compared to the source loosely.
TOLERANCE = {"PCM_U8": 0.02, "ULAW": 0.03, "ALAW": 0.03, "PCM_16": 1e-3}


@pytest.mark.parametrize("container", ["WAV", "WAVEX", "RF64"])
@pytest.mark.parametrize("subtype", WAV_SUBTYPES)
def test_wav_family_decodes_every_subtype(tmp_path, container, subtype):
    x = tone(440, 0.5, 16000)
    path = tmp_path / f"a.{container.lower()}.wav"
    sf.write(path, x, 16000, format=container, subtype=subtype)
    audio = decode(path)
    assert audio.format == container and audio.sample_rate == 16000 and audio.channels == 1
    assert audio.samples.dtype == np.float32 and audio.samples.shape == (8000,)
    np.testing.assert_allclose(audio.samples, x[:, 0], atol=TOLERANCE.get(subtype, 1e-5))


@pytest.mark.parametrize(
    ("fmt", "subtype", "sr"),
    [("FLAC", "PCM_16", 44100), ("FLAC", "PCM_24", 96000), ("OGG", "VORBIS", 32000),
     ("OGG", "OPUS", 8000), ("OGG", "OPUS", 12000), ("OGG", "OPUS", 16000), ("OGG", "OPUS", 24000),
     ("OGG", "OPUS", 48000), ("MP3", "MPEG_LAYER_III", 44100), ("MP3", "MPEG_LAYER_III", 22050)],
)
def test_compressed_formats_keep_length_and_pitch(tmp_path, fmt, subtype, sr):
    x = tone(1000, 2.0, sr)
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, x, sr, format=fmt, subtype=subtype)
    audio = decode(path, sample_rate=32000)
    assert audio.source_sample_rate == sr and audio.sample_rate == 32000
    assert abs(audio.duration_s - 2.0) < 0.01
    assert abs(dominant_freq(audio.samples, 32000) - 1000) < 2
    if fmt == "FLAC":
        np.testing.assert_allclose(decode(path).samples, x[:, 0], atol=1e-4)


@pytest.mark.parametrize("sr", [8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 192000, 384000])
def test_sample_rates_8k_to_384k_resample_to_model_rate(tmp_path, sr):
    seconds, freq = 1.0, 1500.0
    path = tmp_path / f"{sr}.flac" if sr <= 96000 else tmp_path / f"{sr}.wav"  # FLAC stops at 655 kHz
    sf.write(path, tone(freq, seconds, sr), sr)
    audio = decode(path, sample_rate=32000)
    assert audio.source_sample_rate == sr
    assert len(audio.samples) == 32000  # duration preserved to the sample
    assert abs(dominant_freq(audio.samples, 32000) - freq) < 1.5
    # The steady part of the resampled sine is a clean sine: compare with the exact one.
    expected = tone(freq, seconds, 32000)[:, 0]
    np.testing.assert_allclose(audio.samples[2000:-2000], expected[2000:-2000], atol=2e-3)


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5, 6, 7, 8])
def test_channels_are_averaged(tmp_path, channels):
    x = tone(440, 0.25, 16000, channels=channels)
    path = tmp_path / "multi.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    audio = decode(path)
    assert audio.channels == channels
    np.testing.assert_allclose(audio.samples, x.mean(axis=1), atol=1e-6)


def test_sources_path_str_bytes_and_file_object_agree(tmp_path):
    x = tone(440, 0.5, 22050)
    path = tmp_path / "a.flac"
    sf.write(path, x, 22050)
    data = path.read_bytes()
    results = [decode(path), decode(str(path)), decode(data), decode(bytearray(data)), decode(memoryview(data))]
    with open(path, "rb") as fh:
        results.append(decode(fh))
    results.append(decode(io.BytesIO(data)))
    for audio in results:
        np.testing.assert_array_equal(audio.samples, results[0].samples)


def test_silence_is_valid(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16000, np.float32), 16000)
    audio = decode(path, sample_rate=32000)
    assert len(audio.samples) == 32000 and not audio.samples.any()


def test_probe_reads_header_without_samples(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, tone(440, 1.5, 48000, channels=2), 48000)
    info = probe(path)
    assert (info.sample_rate, info.channels, info.frames, info.format) == (48000, 2, 72000, "FLAC")
    assert info.duration_s == 1.5


# -- scipy's real WAV fixtures -------------------------------------------------------------------------

# file -> (frames, channels, source rate) when it decodes, or the AudioErrorCode it must raise.
SCIPY_FIXTURES: dict[str, tuple[int, int, int] | AudioErrorCode] = {
    "test-1234Hz-le-1ch-10S-20bit-extra.wav": E.BAD_SAMPLE_RATE,  # 1234 Hz is below 8 kHz
    "test-44100Hz-2ch-32bit-float-be.wav": (441, 2, 44100),
    "test-44100Hz-2ch-32bit-float-le.wav": (441, 2, 44100),
    "test-44100Hz-be-1ch-4bytes.wav": (4410, 1, 44100),
    "test-44100Hz-le-1ch-4bytes-early-eof-no-data.wav": E.TRUNCATED,  # header only, no data chunk
    "test-44100Hz-le-1ch-4bytes-early-eof.wav": E.TRUNCATED,  # data chunk cut short
    "test-44100Hz-le-1ch-4bytes-incomplete-chunk.wav": E.TRUNCATED,  # 13 bytes
    "test-44100Hz-le-1ch-4bytes-rf64.wav": (4410, 1, 44100),
    "test-44100Hz-le-1ch-4bytes.wav": (4410, 1, 44100),
    "test-48000Hz-2ch-64bit-float-le-wavex.wav": (480, 2, 48000),
    "test-8000Hz-be-3ch-5S-24bit.wav": (5, 3, 8000),
    "test-8000Hz-le-1ch-1byte-ulaw.wav": (9, 1, 8000),
    "test-8000Hz-le-2ch-1byteu.wav": (800, 2, 8000),
    "test-8000Hz-le-3ch-5S-24bit-inconsistent.wav": (5, 3, 8000),  # odd block align; libsndfile copes
    "test-8000Hz-le-3ch-5S-24bit-rf64.wav": (5, 3, 8000),
    "test-8000Hz-le-3ch-5S-24bit.wav": (5, 3, 8000),
    "test-8000Hz-le-3ch-5S-36bit.wav": E.UNSUPPORTED_FORMAT,
    "test-8000Hz-le-3ch-5S-45bit.wav": E.UNSUPPORTED_FORMAT,
    "test-8000Hz-le-3ch-5S-53bit.wav": E.UNSUPPORTED_FORMAT,
    "test-8000Hz-le-3ch-5S-64bit.wav": E.UNSUPPORTED_FORMAT,
    "test-8000Hz-le-4ch-9S-12bit.wav": (9, 4, 8000),
    "test-8000Hz-le-5ch-9S-5bit.wav": (9, 5, 8000),
}


def test_scipy_fixture_table_covers_every_fixture():
    assert sorted(p.name for p in SCIPY_DATA.glob("*.wav")) == sorted(SCIPY_FIXTURES)


@pytest.mark.parametrize("name", sorted(SCIPY_FIXTURES))
def test_scipy_fixtures(name):
    expected = SCIPY_FIXTURES[name]
    path = SCIPY_DATA / name
    if isinstance(expected, AudioErrorCode):
        with pytest.raises(AudioError) as err:
            decode(path)
        assert err.value.code == expected
        assert name in err.value.message
        return
    frames, channels, rate = expected
    audio = decode(path)
    assert (len(audio.samples), audio.channels, audio.sample_rate) == (frames, channels, rate)
    assert np.isfinite(audio.samples).all() and np.abs(audio.samples).max() <= 1.0
    # The same file from bytes decodes identically.
    np.testing.assert_array_equal(decode(path.read_bytes()).samples, audio.samples)


# -- errors ----------------------------------------------------------------------------------------------


def expect_error(source, code: AudioErrorCode, name: str = "upload.bin", **kw) -> AudioError:
    with pytest.raises(AudioError) as err:
        decode(source, name=name, **kw)
    assert err.value.code == code, err.value
    assert name in err.value.message and str(code) in str(err.value)
    return err.value


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError) as err:
        decode(path)
    assert err.value.code == E.EMPTY and str(path) in err.value.message
    expect_error(b"", E.EMPTY)
    # A valid WAV header with a zero-length data chunk holds no samples either.
    expect_error(wav_header(data_bytes=0), E.EMPTY)


@pytest.mark.parametrize(
    "payload",
    [b"just some text, not audio\n" * 40,
     b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(200),
     np.random.default_rng(0).bytes(8192)],
    ids=["text", "png", "random"],
)
def test_not_audio(payload):
    expect_error(payload, E.NOT_AUDIO)


SEGMENTS = [("FLAC", "PCM_16", 32000), ("OGG", "VORBIS", 32000), ("OGG", "OPUS", 48000),
            ("MP3", "MPEG_LAYER_III", 32000), ("WAV", "PCM_16", 32000), ("RF64", "PCM_16", 32000)]


@pytest.fixture(scope="module")
def encoded() -> dict[str, bytes]:
    """Ten seconds of a tone in each compressed and PCM container."""
    return {f"{fmt}/{sub}": encode(tone(440, 10.0, sr), sr, fmt, sub) for fmt, sub, sr in SEGMENTS}


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("key", [f"{fmt}/{sub}" for fmt, sub, _ in SEGMENTS])
def test_truncated_streams_are_reported(encoded, key, fraction):
    """Policy: a file cut anywhere after its header is TRUNCATED, never silently read short."""
    data = encoded[key]
    expect_error(data[: int(len(data) * fraction)], E.TRUNCATED, name="cut.audio")
    assert len(decode(data).samples) in (320000, 480000)  # the uncut file is fine


@pytest.mark.parametrize("key", ["FLAC/PCM_16", "OGG/VORBIS", "OGG/OPUS"])
@pytest.mark.parametrize("where", [0.3, 0.5, 0.7])
def test_corrupt_bytes_inside_a_checksummed_stream(encoded, key, where):
    """FLAC frames and Ogg pages carry CRCs: damage in the middle is CORRUPT (not truncated, not OK)."""
    data = bytearray(encoded[key])
    at = int(len(data) * where)
    data[at : at + 200] = np.random.default_rng(1).bytes(200)
    expect_error(bytes(data), E.CORRUPT)


def test_damaged_mp3_frames_are_reported():
    """libmpg123 skips damaged frames; the shortfall against the Xing frame count is reported."""
    data = bytearray(encode(tone(440, 10.0, 32000), 32000, "MP3", "MPEG_LAYER_III"))
    at = len(data) // 2
    data[at : at + 200] = np.random.default_rng(1).bytes(200)
    err = expect_error(bytes(data), E.TRUNCATED)
    assert "damaged" in err.message


def test_corrupt_wav_header_is_not_accepted():
    data = bytearray(encode(tone(440, 1.0, 16000), 16000, "WAV", "PCM_16"))
    data[20:22] = struct.pack("<H", 77)  # an unknown format tag
    with pytest.raises(AudioError) as err:
        decode(bytes(data), name="bad.wav")
    assert err.value.code in (E.UNSUPPORTED_FORMAT, E.CORRUPT) and "bad.wav" in err.value.message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_nan_and_inf_samples(bad, subtype):
    x = tone(440, 0.5, 16000)
    x[1234, 0] = bad
    expect_error(encode(x, 16000, "WAV", subtype), E.NON_FINITE)


@pytest.mark.parametrize("header", [wav_header, rf64_header], ids=["wav", "rf64"])
def test_too_long_is_refused_from_the_header_in_milliseconds(header):
    """A 104-byte header declaring ten hours: refused before any sample is read, in a few ms."""
    data = header(data_bytes=32000 * 2 * 36000)
    t0 = time.perf_counter()
    err = expect_error(data, E.TOO_LONG, max_duration_s=600)
    elapsed = time.perf_counter() - t0
    assert "36000.0 s" in err.message
    assert elapsed < 0.05, f"took {elapsed * 1000:.1f} ms"


def test_too_long_real_file(tmp_path):
    path = tmp_path / "long.flac"
    sf.write(path, np.zeros(16000 * 12, np.float32), 16000)
    expect_error(path, E.TOO_LONG, name="long.flac", max_duration_s=10)
    assert decode(path, max_duration_s=12).duration_s == 12.0


def test_zero_channels():
    expect_error(wav_header(channels=0, data_bytes=1000) + bytes(1000), E.NO_CHANNELS)


@pytest.mark.parametrize("sr", [4000, 7999, 400000, 768000])
def test_sample_rate_out_of_range(sr):
    data = encode(np.zeros((800, 1), np.float32), sr, "WAV", "PCM_16")
    err = expect_error(data, E.BAD_SAMPLE_RATE)
    assert f"{sr} Hz" in err.message


def test_boundary_sample_rates_are_accepted():
    for sr in (8000, 384000):
        assert decode(encode(np.zeros((sr // 10, 1), np.float32), sr, "WAV", "PCM_16")).source_sample_rate == sr
