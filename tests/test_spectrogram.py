"""The page's spectrogram (soundscape/spectrogram.py): built from the pipeline's own chunks, placed in time,
pooled in bounded memory, and written as a PNG that decodes to the image."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from soundscape.audio import Frontend
from soundscape.pipeline import WindowPipeline
from soundscape.spectrogram import VIRIDIS, SpectrogramBuilder, display_config, png
from tests.utils.models import tiny_card, tiny_frontend, tiny_waveform_frontend


def _decode_png(data: bytes) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Width, height, palette and rows of an 8-bit palette PNG written by :func:`png`."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF, tag
        chunks[tag] = chunks.get(tag, b"") + body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 3)
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, width + 1)
    assert (raw[:, 0] == 0).all()
    return width, height, np.frombuffer(chunks[b"PLTE"], np.uint8).reshape(-1, 3), raw[:, 1:]


def test_png_round_trip_puts_low_frequencies_at_the_bottom():
    image = np.random.default_rng(0).integers(0, 256, size=(32, 77), dtype=np.uint8)
    width, height, palette, rows = _decode_png(png(image))
    assert (width, height) == (77, 32)
    np.testing.assert_array_equal(palette, VIRIDIS)
    np.testing.assert_array_equal(rows, image[::-1])


def _tone(seconds: float, rate: int, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t) + 0.01 * np.random.default_rng(0).normal(size=t.shape)).astype(np.float32)


def test_mel_model_shows_its_own_images_in_time():
    fe = tiny_frontend()
    card = tiny_card(fe)
    audio = _tone(20.0, fe.sample_rate, 2000.0)
    audio[int(10 * fe.sample_rate):] *= 0.0  # the tone stops at 10 s
    builder = SpectrogramBuilder(fe, max_columns=100_000)
    builder.start(20.0)
    for chunk in WindowPipeline(card, Frontend(fe), chunk_windows=3).chunks(audio):
        builder.add(chunk.starts_s, chunk.images)
    spec = builder.finish(20.0)
    assert spec.source == "model_frontend" and spec.config == fe
    assert spec.seconds_per_column == pytest.approx(fe.hop_length / fe.sample_rate)
    assert spec.image.shape == (fe.n_mels, int(np.ceil(20.0 / spec.seconds_per_column)))
    first = spec.image[:, : spec.image.shape[1] // 2 - 10]
    row = int(np.argmax(first.mean(axis=1)))
    assert 1700 < spec.frequencies_hz[row] < 2300  # the 2 kHz tone's band
    late = spec.image[row, spec.image.shape[1] // 2 + 10:]  # after 10 s: silence
    assert first[row].mean() > late.mean() + 50


def test_long_recordings_are_pooled_to_max_columns():
    fe = tiny_frontend()
    builder = SpectrogramBuilder(fe, max_columns=500)
    builder.start(3600.0)
    images = Frontend(fe)(np.zeros((2, fe.window_samples), np.float32))
    builder.add(np.array([0.0, 3595.0]), images)
    spec = builder.finish(3600.0)
    assert spec.image.shape[1] <= 500
    assert spec.seconds_per_column == pytest.approx(3605.0 / 500)
    assert spec.duration_s >= 3600.0


def test_waveform_model_shows_a_default_logmel_of_the_same_samples():
    fe = tiny_waveform_frontend()
    windows = np.stack([_tone(fe.window_s, fe.sample_rate, hz) for hz in (1000.0, 3000.0)])
    model_inputs = Frontend(fe)(windows)  # (2, k, model samples): what the pipeline hands the model
    builder = SpectrogramBuilder(fe, max_columns=100_000)
    builder.start(10.0)
    builder.add(np.array([0.0, 5.0]), model_inputs)
    spec = builder.finish(10.0)
    display = display_config(fe)
    assert spec.source == "display_logmel" and display.input == "mel" and display.sample_rate == fe.sample_rate
    expected = SpectrogramBuilder(display, max_columns=100_000)
    expected.start(10.0)
    expected.add(np.array([0.0, 5.0]), Frontend(display)(windows))
    np.testing.assert_array_equal(spec.image, expected.finish(10.0).image)
