"""The bundled store (``model_store/default``): loaded and checksum-verified, refused when tampered with, and
served by a real ``soundscape serve`` whose answers are the in-process pipeline's and find the demo birds."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from model_store import ModelStore, StoreError, StoreErrorCode, default_store_path, sha256_file
from soundscape import render
from soundscape.audio import decode
from soundscape.inference import Engine

MEASURED_AUC = 0.905  # macro ROC-AUC of the bundled v2 (field-trained) on the tiny clean demo's 36 labelled windows


def macro_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """Mean over species with both classes of P(score of a positive > score of a negative), ties count half."""
    aucs = []
    for y, s in zip(truth.T, scores.T, strict=True):
        pos, neg = s[y], s[~y]
        if len(pos) and len(neg):
            aucs.append(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum())
                        / (len(pos) * len(neg)))
    return float(np.mean(aucs))


def test_bundled_model_loads_verified():
    store = ModelStore(default_store_path())
    model = store.load("birds")
    card = model.card
    assert hashlib.sha256(model.onnx_bytes).hexdigest() == card.sha256 == sha256_file(model.path)
    assert store.production("birds") == card.version == 2
    assert card.architecture == "tf_efficientnet_lite0" and len(card.codes) == 14
    assert card.frontend.sample_rate == 32000 and card.frontend.window_s == 5.0


def test_tampered_copy_is_refused(tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(default_store_path(), copy)
    onnx = ModelStore(copy).version_dir("birds", ModelStore(copy).production("birds")) / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    onnx.write_bytes(bytes(data))
    with pytest.raises(StoreError) as err:
        ModelStore(copy).load("birds")
    assert err.value.code == StoreErrorCode.CHECKSUM


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from soundscape.demo import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("bundled-demo") / "demo", seed=0, size="tiny")


@pytest.mark.slow
def test_served_bundled_model_answers_as_the_pipeline_and_finds_the_birds(make_server, demo):
    srv = make_server(store=default_store_path())
    model = ModelStore(default_store_path()).load("birds")
    engine, card = Engine(model), model.card
    with open(demo / "soundscape_labels.csv", newline="") as f:
        labels = {r["row_id"]: set(r["birds"].split()) for r in csv.DictReader(f)}
    truth, scores = [], []
    for path in sorted((demo / "soundscapes").glob("*.ogg")):
        r = srv.client.post("/v1/predict", files={"file": (path.name, path.read_bytes(), "audio/ogg")})
        assert r.status_code == 200, r.text
        served = r.json()
        local = render.response(engine.predict(decode(path, sample_rate=engine.decode_rate)), card, path.stem)
        assert served["model"] == {"name": "birds", "version": 2} and served["audio"] == local.audio.model_dump()
        assert [w["row_id"] for w in served["windows"]] == [w.row_id for w in local.windows]
        np.testing.assert_allclose([list(w["probabilities"].values()) for w in served["windows"]],
                                   [list(w.probabilities.values()) for w in local.windows], atol=2e-6)
        for w in served["windows"]:
            truth.append([c in labels[w["row_id"]] for c in card.codes])
            scores.append([w["probabilities"][c] for c in card.codes])
    auc = macro_auc(np.array(truth), np.array(scores))
    assert auc >= MEASURED_AUC - 0.1, f"macro ROC-AUC {auc:.3f} (measured {MEASURED_AUC}; chance is 0.5)"
