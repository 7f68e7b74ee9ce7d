"""The log-mel front end at a file's own rate (:mod:`soundscape.audio.native`): which rates qualify, images and
probabilities against the resampled path, streaming, the off switches (engine, pipeline, analyze, service)."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest
import soundfile as sf

from model_store import ModelStore, default_store_path
from soundscape.audio import AudioStream, Frontend, FrontendConfig, decode, resample
from soundscape.audio.functional import frame_windows
from soundscape.audio.native import native_config, native_power_scale
from soundscape.inference import Engine
from soundscape.pipeline import WindowPipeline
from tests.utils.models import make_store, tiny_frontend, tiny_waveform_frontend

EDGE = 2  # frames at each end of a window whose reflect padding differs between the two paths
TINY = tiny_frontend(fmax=7000.0)  # the tests' 16 kHz card, fmax inside the resampler's passband


# -- which rates --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("rate", "want"), [
    (48000, (3072, 768)), (96000, (6144, 1536)), (64000, (4096, 1024)), (192000, (12288, 3072)),
    (24000, None),  # Nyquist 12 kHz < fmax 14 kHz
    (16000, None), (44100, None), (22050, None), (32000, None), (8000, None),
    (384000, None),  # n_fft 24576 is over FrontendConfig's 16384
])
def test_native_config_of_the_default_card(rate, want):
    cfg = FrontendConfig()
    got = native_config(cfg, rate)
    if want is None:
        assert got is None
        return
    assert (got.n_fft, got.hop_length, got.sample_rate) == (*want, rate)
    assert got.image_shape == cfg.image_shape and got.n_frames == 313
    assert got.window_samples == 5 * rate and got.win_length is None
    assert got.model_dump(exclude={"sample_rate", "n_fft", "hop_length"}) == cfg.model_dump(
        exclude={"sample_rate", "n_fft", "hop_length"})
    assert native_power_scale(cfg, rate) == pytest.approx((32000 / rate) ** 2)


def test_native_config_edge_cases():
    assert native_config(FrontendConfig(fmax=10000.0), 24000).n_fft == 1536  # x0.75 once fmax fits
    assert native_config(FrontendConfig(fmax=11000.0), 24000) is None  # above soxr's passband (0.91 * 12 kHz)
    assert native_config(FrontendConfig(fmax=14600.0), 48000) is None  # above soxr's passband (0.91 * 16 kHz)
    assert native_config(TINY, 24000).hop_length == 384  # 16 kHz card: x1.5
    assert native_config(TINY, 8000) is None  # Nyquist 4 kHz < fmax
    # fmax at the card's Nyquist frequency: its top bands are attenuated by the resampler, so it always resamples
    assert native_config(tiny_frontend(), 48000) is None and native_config(tiny_frontend(), 32000) is None
    assert native_config(FrontendConfig(win_length=1600), 48000).win_length == 2400
    assert native_config(FrontendConfig(win_length=1601), 48000) is None  # 2401.5 samples
    assert native_config(FrontendConfig(window_s=1.99997, min_partial_s=1.0), 48000) is None  # 95998.5 samples
    assert native_config(tiny_waveform_frontend(), 32000) is None
    from soundscape.audio import native, reader

    assert (native._MIN_RATE, native._MAX_RATE) == (reader.MIN_SAMPLE_RATE, reader.MAX_SAMPLE_RATE)
    assert native_config(FrontendConfig(input="waveform", sample_rate=48000, fmax=14000.0), 96000) is None
    fe = Frontend(FrontendConfig())
    assert fe.native(48000) is fe.native(48000) and fe.native(44100) is None and fe.native(32000) is None
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(fe.native(96000))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(x) for x in got}) == 1 and got[0].cfg.sample_rate == 96000
    assert got[0].power_scale == pytest.approx(1 / 9)


# -- images ------------------------------------------------------------------------------------------------
def band_limited(rate: int, seconds: float = 30.0, top: float = 14000.0, seed: int = 0) -> np.ndarray:
    """Chirps, gated tones and noise, all below ``top`` Hz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    k = top / 14000
    x = np.zeros_like(t)
    for f0, f1, a in ((800, 9000 * k, 0.2), (3000, 13000 * k, 0.1), (11000 * k, 2000, 0.15)):
        x += a * np.sin(2 * np.pi * (f0 * t + (f1 - f0) / (2 * seconds) * t * t)) * (0.5 + 0.5 * np.sin(t + f0))
    for f in (1500, 4200, 7777 * k, 12345 * k):
        x += 0.05 * np.sin(2 * np.pi * f * t) * (np.sin(2 * np.pi * 0.7 * t + f) > 0)
    spec = np.fft.rfft(rng.standard_normal(len(t)) * 0.02)
    spec[np.fft.rfftfreq(len(t), 1 / rate) > top] = 0
    return (x + np.fft.irfft(spec, len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def demo_minute() -> np.ndarray:
    """A 48 kHz field soundscape of the demo data set (as ``soundscape demo-data`` writes it, before encoding)."""
    from soundscape.demo.field import render_field_soundscape

    scape = render_field_soundscape(0, 1)
    assert scape.plan.sample_rate == 48000
    return scape.mix.astype(np.float32)


def both_paths(cfg: FrontendConfig, x: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Images of ``x`` (at ``rate``): resampled to the card's rate, and natively."""
    fe = Frontend(cfg)
    resampled, starts = frame_windows(resample(x, rate, cfg.sample_rate), cfg.sample_rate, cfg.window_s,
                                      cfg.hop_s, cfg.min_partial_s)
    native, native_starts = frame_windows(x, rate, cfg.window_s, cfg.hop_s, cfg.min_partial_s)
    np.testing.assert_array_equal(starts, native_starts)
    a, b = fe(resampled), fe.native(rate)(native)
    assert a.shape == b.shape
    return a, b


@pytest.mark.parametrize(("rate", "cfg"), [
    (48000, FrontendConfig()), (96000, FrontendConfig()), (24000, FrontendConfig(fmax=10000.0)),
], ids=["48k", "96k", "24k"])
def test_images_match_the_resampled_path_on_band_limited_signals(rate, cfg):
    x = band_limited(rate, top=cfg.fmax)
    # dB before normalisation: the power scale is right and the interior frames agree (measured <= 1.7e-4 dB)
    raw = cfg.model_copy(update={"normalize": "none"})
    a, b = both_paths(raw, x, rate)
    assert np.abs(a - b)[..., EDGE:-EDGE].max() <= 1e-3
    # normalised: the edge frames (up to ~2 here) move each window's mean and std a little (measured <= 3.9e-3)
    a, b = both_paths(cfg, x, rate)
    diff = np.abs(a - b)
    assert diff[..., EDGE:-EDGE].max() <= 1e-2
    assert diff.max() <= 3.0


def full_band(seconds: float, rate: int, seed: int) -> np.ndarray:
    """White noise up to the rate's Nyquist frequency plus a gated tone (the analyze tests' ``tone_noise``)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (rng.normal(0, 0.05, len(t)) + 0.3 * np.sin(2 * np.pi * (800 + 300 * seed) * t)
            * (np.sin(t / 3 + seed) > 0.3)).astype(np.float32)


@pytest.mark.parametrize(("rate", "cfg"), [(48000, FrontendConfig()), (96000, FrontendConfig()), (24000, TINY)],
                         ids=["48k", "96k", "24k-tiny"])
def test_images_on_full_band_noise(rate, cfg):
    """White noise above the card's Nyquist frequency: the dB interior still agrees; the edge frames differ more
    (the reflect padding folds the high band into them), which moves each window's normalisation a little."""
    x = full_band(41.3, rate, 3)
    a, b = both_paths(cfg.model_copy(update={"normalize": "none"}), x, rate)
    assert np.abs(a - b)[..., EDGE:-EDGE].max() <= 1e-3  # measured <= 9e-5 dB
    a, b = both_paths(cfg, x, rate)
    diff = np.abs(a - b)
    assert diff[..., EDGE:-EDGE].max() <= 3e-2  # measured 2.2e-3 (48 kHz) to 8.9e-3 (96 kHz)
    assert diff.max() <= 3.0  # measured <= 1.2


@pytest.mark.parametrize("rate", [48000, 96000, 64000])
def test_images_match_the_resampled_path_on_a_demo_recording(demo_minute, rate):
    x = demo_minute if rate == 48000 else resample(demo_minute, 48000, rate)
    a, b = both_paths(FrontendConfig(), x, rate)
    assert a.shape == (12, 128, 313)
    diff = np.abs(a - b)
    assert diff[..., EDGE:-EDGE].max() <= 1e-3  # measured 1.1-1.2e-4
    assert diff[..., EDGE:-EDGE].mean() <= 1e-4  # measured 1.1-1.5e-5
    assert diff.max() <= 1.5  # edge frames, measured 0.44 (48 kHz) to 0.70 (96 kHz)


# -- through the pipeline and a model ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("native-store") / "store"
    make_store(root, frontend=TINY)
    return root


@pytest.fixture(scope="module")
def tiny_engine(tiny_root) -> Engine:
    return Engine(ModelStore(tiny_root).load("birds"), native_rate=True)


def flac(x: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="FLAC", subtype="PCM_24")
    return buf.getvalue()


@pytest.mark.parametrize("rate", [48000, 32000, 24000])
def test_pipeline_runs_at_the_file_rate_and_matches_the_resampled_path(tiny_engine, rate):
    """The tiny model (16 kHz card): 48, 32 and 24 kHz files run natively (x3, x2, x1.5)."""
    x = band_limited(rate, seconds=23.0, top=7000.0, seed=rate)
    data = flac(x, rate)
    pipe = tiny_engine.pipeline(2.5)
    assert pipe.decode_rate(rate) == rate and pipe.decode_rate(44100) == 16000
    native = tiny_engine.predict(AudioStream(data, sample_rate=pipe.decode_rate), hop_s=2.5)
    old = tiny_engine.predict(decode(data, sample_rate=16000), hop_s=2.5)
    np.testing.assert_array_equal(native.starts_s, old.starts_s)
    assert native.probabilities.shape == old.probabilities.shape == (9, 4)
    assert native.audio.sample_rate == rate and native.audio.duration_s == pytest.approx(23.0, abs=1e-6)
    assert old.audio.duration_s == pytest.approx(23.0, abs=1e-4)
    assert np.abs(native.probabilities - old.probabilities).max() <= 2e-3  # measured 2.5e-4 to 7.4e-4


def test_streamed_in_uneven_blocks_equals_the_whole_file(tiny_engine):
    data = flac(band_limited(48000, seconds=31.3, top=7000.0), 48000)
    whole = tiny_engine.predict(decode(data, sample_rate=tiny_engine.decode_rate), hop_s=1.0, embeddings=True)
    assert whole.audio.sample_rate == 48000
    for block_s, batch in ((0.7, 3), (2.3, 64), (5.0, 7)):
        streamed = tiny_engine.predict(AudioStream(data, sample_rate=tiny_engine.decode_rate, block_s=block_s),
                                       hop_s=1.0, embeddings=True, batch_size=batch)
        np.testing.assert_array_equal(streamed.starts_s, whole.starts_s)
        np.testing.assert_array_equal(streamed.probabilities, whole.probabilities)
        np.testing.assert_array_equal(streamed.embeddings, whole.embeddings)
        assert streamed.audio == whole.audio


def test_off_switch_gives_the_resampled_output_exactly(tiny_engine, tiny_root):
    data = flac(band_limited(48000, seconds=17.0, top=7000.0), 48000)
    old = tiny_engine.predict(decode(data, sample_rate=16000), hop_s=2.0, embeddings=True)  # the path before
    for engine_off in (False, True):
        engine = Engine(ModelStore(tiny_root).load("birds")) if engine_off else tiny_engine  # off: the default
        kwargs = {} if engine_off else {"native_rate": False}
        assert engine.decode_rate(48000, **kwargs) == 16000
        pipe = engine.pipeline(2.0, **kwargs)
        off = pipe.run(AudioStream(data, sample_rate=pipe.decode_rate), lambda x, e=engine: e.run(x, embeddings=True))
        np.testing.assert_array_equal(off.starts_s, old.starts_s)
        np.testing.assert_array_equal(off.probabilities, old.probabilities)
        np.testing.assert_array_equal(off.embeddings, old.embeddings)
        assert off.audio == old.audio
    # with the switch off, audio at the file's rate is refused as before
    with pytest.raises(ValueError, match="48000 Hz but the front end expects 16000 Hz"):
        tiny_engine.predict(decode(data), native_rate=False)
    with pytest.raises(ValueError, match="44100 Hz but the front end expects 16000 Hz"):
        tiny_engine.predict(decode(flac(np.zeros(44100, np.float32), 44100)))


def test_waveform_models_always_resample(tmp_path):
    root = tmp_path / "store"
    make_store(root, kind="waveform")
    engine = Engine(ModelStore(root).load("birds"))
    assert engine.decode_rate(48000) == engine.decode_rate(32000) == engine.card.frontend.sample_rate
    assert WindowPipeline(engine.card, engine.frontend).decode_rate(96000) == engine.card.frontend.sample_rate


def test_bundled_model_probabilities_on_a_48k_demo_flac(demo_minute):
    """The bundled EfficientNet on a demo minute written as 48 kHz FLAC: native vs resampled.

    Measured: max abs difference 0.021-0.045 (mean 0.004-0.006) over two demo minutes at 48/64/96 kHz. The
    model itself is that sensitive: gaussian noise of 1e-5 (a tenth of the images' interior difference) added
    to the resampled path's images moves its probabilities by up to 0.039, and swapping in the resampled
    path's edge frames leaves the difference unchanged."""
    engine = Engine(ModelStore(default_store_path()).load("birds"), native_rate=True)
    data = flac(demo_minute, 48000)
    native = engine.predict(AudioStream(data, sample_rate=engine.decode_rate), postprocess=False)
    old = engine.predict(AudioStream(data, sample_rate=32000), postprocess=False)
    assert native.audio.sample_rate == 48000 and native.audio.duration_s == old.audio.duration_s == 60.0
    np.testing.assert_array_equal(native.starts_s, old.starts_s)
    diff = np.abs(native.probabilities - old.probabilities)
    assert diff.max() <= 0.1 and diff.mean() <= 0.02


# -- entry points ------------------------------------------------------------------------------------------
def test_analyze_48k_file_gives_the_same_windows_and_no_native_rate_the_old_ones(tmp_path):
    import argparse

    from soundscape.analyze.cli import add_arguments
    from soundscape.analyze.runner import run_analysis
    from soundscape.analyze.settings import AnalyzeSettings

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["a.wav", "--out", "o"]).native_rate is False
    assert parser.parse_args(["a.wav", "--out", "o", "--native-rate"]).native_rate is True

    root = tmp_path / "store"
    make_store(root, frontend=TINY)
    path = tmp_path / "rec.flac"
    sf.write(path, full_band(21.0, 48000, 3), 48000)
    got = {}
    for native in (True, False):
        settings = AnalyzeSettings(inputs=[str(path)], out=tmp_path / f"out{native}", store=root, workers=1,
                                   formats=["json"], hop_s=2.0, block_s=3.3, batch_size=5, threshold=None,
                                   native_rate=native)
        assert ("native_rate" in settings.result_options()) is native
        run_analysis(settings, progress=False)
        got[native] = json.loads((tmp_path / f"out{native}" / "rec.json").read_text())
    old = Engine(ModelStore(root).load("birds")).predict(decode(path, sample_rate=16000), hop_s=2.0)
    for native, body in got.items():
        assert [w["start_s"] for w in body["windows"]] == list(old.starts_s)
        probs = np.array([list(w["probabilities"].values()) for w in body["windows"]])
        np.testing.assert_allclose(probs, old.probabilities, atol=2e-3 if native else 1e-6)  # native: measured 6.1e-4
    assert got[True]["audio"] == got[False]["audio"]


def test_service_setting(monkeypatch):
    from app.core.config import Settings

    assert Settings().native_rate_mel is False
    monkeypatch.setenv("SOUNDSCAPE_NATIVE_RATE_MEL", "true")
    assert Settings().native_rate_mel is True
    assert "resample" in Settings.model_fields["native_rate_mel"].description


def test_service_48k_upload_gives_the_same_windows_and_the_off_switch_the_old_ones(make_server, tiny_root):
    data = flac(full_band(17.0, 48000, 5), 48000)
    bodies, specs = {}, {}
    for native in (True, False):
        srv = make_server(store=tiny_root, native_rate_mel=str(native).lower())
        r = srv.client.post("/v1/predict", params={"hop_s": 2.5},
                            files={"file": ("rec.flac", data, "audio/flac")})
        assert r.status_code == 200, r.text
        bodies[native] = r.json()
        review = srv.client.post("/v1/review", params={"hop_s": 2.5}, files={"file": ("rec.flac", data, "audio/flac")})
        assert review.status_code == 200, review.text
        spec = review.json()["spectrogram"]  # built from the pipeline's chunks: the same layout either way
        assert spec["source"] == "model_frontend" and spec["height"] == TINY.n_mels
        assert spec["seconds_per_column"] == pytest.approx(TINY.hop_length / TINY.sample_rate)
        assert spec["duration_s"] == pytest.approx(max(17.0, bodies[native]["windows"][-1]["end_s"]),
                                                   abs=spec["seconds_per_column"])
        specs[native] = spec
    old = Engine(ModelStore(tiny_root).load("birds")).predict(decode(data, sample_rate=16000), hop_s=2.5)
    for native, body in bodies.items():
        assert [w["start_s"] for w in body["windows"]] == list(old.starts_s)
        assert body["audio"]["sample_rate"] == 48000 and body["audio"]["duration_s"] == pytest.approx(17.0)
        probs = np.array([list(w["probabilities"].values()) for w in body["windows"]])
        np.testing.assert_allclose(probs, old.probabilities, atol=3e-3 if native else 2e-6)
    native, off = (np.array([list(w["probabilities"].values()) for w in bodies[k]["windows"]]) for k in (True, False))
    assert 0 < np.abs(native - off).max() <= 3e-3  # the native path did run (measured 1.3e-3)
    assert bodies[True]["audio"] == bodies[False]["audio"]
    assert [w["row_id"] for w in bodies[True]["windows"]] == [w["row_id"] for w in bodies[False]["windows"]]
    assert specs[True]["width"] == specs[False]["width"]
