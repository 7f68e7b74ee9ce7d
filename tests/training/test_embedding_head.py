"""Embedding heads on a frozen backbone: cached embeddings, learning, export parity, the store's checks, and the
composed model served by a real ``soundscape serve``, ``analyze`` and a hot reload.

The backbone is the tiny waveform ONNX model of ``tests/utils/models.py`` (seed 3: each of its 4 embedding
dimensions is the energy at 1638, 2621, 4194 or 6710 Hz in a 2-s model window at 16 kHz); the clips call at those
frequencies, so a head can learn them from the embeddings alone.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import numpy_helper

from model_store import ModelStore, StoreError, StoreErrorCode, VerifiedModel, load_folder
from soundscape.audio import decode
from soundscape.cli import main
from soundscape.inference import Engine
from tests.training.conftest import call
from tests.utils.models import make_store, tiny_waveform_card, tiny_waveform_frontend, write_tiny_waveform_onnx
from tests.utils.server import ADMIN_TOKEN
from training.embedding_head import HeadCheckpoint
from training.export import ExportError
from training.head_export import check_head_parity

ROOT = Path(__file__).resolve().parents[2]
# code -> (call frequency Hz: one of the backbone's, clips); 'toptsk' has a single clip
SPECIES = {"lowpee": (1638.4, 4), "midtoo": (2621.44, 3), "hiwhis": (4194.304, 3), "toptsk": (6710.8864, 1)}
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def write_head_data(root: Path) -> Path:
    """Clips of the four callers (16 and 32 kHz), a labelled 20-s soundscape and two backgrounds."""
    rng = np.random.default_rng(1)
    rows = []
    for k, (code, (freq, n)) in enumerate(SPECIES.items()):
        (root / "train_audio" / code).mkdir(parents=True)
        for i in range(n):
            rate = (16000, 32000)[(k + i) % 2]
            sf.write(root / "train_audio" / code / f"{i}.wav", call(freq, rng.uniform(4.0, 8.0), rate, rng), rate)
            rows.append({"primary_label": code, "secondary_labels": "[]", "filename": f"{code}/{i}.wav"})
    with open(root / "train_metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (root / "soundscapes").mkdir()
    scape = 0.01 * rng.standard_normal(20 * 16000).astype(np.float32)
    birds = ["lowpee", "nocall", "midtoo hiwhis", "toptsk"]
    for w, label in enumerate(birds):
        for code in set(label.split()) - {"nocall"}:
            scape[w * 80000 : (w + 1) * 80000] += call(SPECIES[code][0], 5.0, 16000, rng)
    sf.write(root / "soundscapes" / "S01.wav", scape, 16000)
    with open(root / "soundscape_labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["row_id", "soundscape_id", "end_time", "birds"])
        writer.writerows([f"S01_{(w + 1) * 5}", "S01", (w + 1) * 5, label] for w, label in enumerate(birds))
    (root / "backgrounds").mkdir()
    sf.write(root / "backgrounds" / "bg.wav", (0.05 * rng.standard_normal(8 * 16000)).astype(np.float32), 16000)
    return root


@pytest.fixture(scope="module")
def head_data(tmp_path_factory) -> Path:
    return write_head_data(tmp_path_factory.mktemp("head-data"))


@pytest.fixture(scope="module")
def backbone_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("backbone") / "store"
    fe = tiny_waveform_frontend()
    path = write_tiny_waveform_onnx(root.parent / "backbone.onnx", fe, 4, seed=3)
    ModelStore(root).register(tiny_waveform_card(fe, name="backbone", license="CC0-1.0"), path, promote=True)
    return root


def train_args(data: Path, store: Path, out: Path, *extra: str) -> list[str]:
    return ["--log-level", "WARNING", "train", "--backbone", "backbone", "--backbone-store", str(store),
            "--metadata", str(data / "train_metadata.csv"), "--audio-root", str(data / "train_audio"),
            "--backgrounds", str(data / "backgrounds"), "--soundscapes-labels", str(data / "soundscape_labels.csv"),
            "--soundscapes-dir", str(data / "soundscapes"), "--out", str(out), "--cache-dir",
            str(out.parent / "cache"), "--epochs", "12", "--batch-size", "16", "--patience", "12", *extra]


@pytest.fixture(scope="module")
def head_run(head_data, backbone_store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("head-run") / "run"
    config = out.parent / "head.json"
    config.write_text(json.dumps({"epoch_samples": 256, "head_training": {"crops_per_clip": 4},
                                  "pseudo": {"n_windows": 48, "block_windows": 24}}))
    assert main(train_args(head_data, backbone_store, out, "--head", "mlp", "--config", str(config))) == 0
    return out


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_a_head_learns_separable_data(head_run):
    for name in ("best.pt", "last.pt", "metrics.csv", "curves.png", "problems.csv", "embeddings.json"):
        assert (head_run / name).is_file(), name
    rows = metrics(head_run)
    best = max(float(r["padded_cmap"]) for r in rows)
    assert best > 0.85, rows  # pseudo-soundscapes: held-out calls in beds at -6..12 dB (random scores: ~0.5)
    assert float(rows[-1]["train_loss"]) < 0.7 * float(rows[0]["train_loss"])
    assert max(float(r["clips_macro_roc_auc"]) for r in rows) > 0.9 and rows[0]["soundscapes_padded_cmap"]
    ckpt = HeadCheckpoint.load(head_run / "best.pt")
    assert ckpt.head == "mlp" and ckpt.codes == sorted(SPECIES) and ckpt.dim == 4
    assert ckpt.backbone.name == "backbone" and ckpt.backbone.version == 1 and ckpt.validation.selected_by == (
        "pseudo_soundscapes")
    assert ckpt.train_config["frontend"]["input"] == "waveform"  # the data was read at the backbone's front end
    assert ckpt.train_config["epochs"] == 12 and ckpt.data.clips_per_label["toptsk"] == 1
    assert ckpt.train_config["lr"] == 3e-3  # a head's own default (HEAD_DEFAULTS), fine-tuning's is 1e-3


def test_a_head_trains_on_raven_tables(head_data, backbone_store, tmp_path):
    """A --backbone run takes a Raven input like the BirdCLEF layout (training.inputs: the same clip list)."""
    with open(head_data / "soundscape_labels.csv", newline="") as f:
        boxes = [(float(r["end_time"]), code) for r in csv.DictReader(f) for code in r["birds"].split()
                 if code != "nocall"]
    table = tmp_path / "S01.Table.1.selections.txt"
    table.write_text("Selection\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tSpecies\n" + "".join(
        f"{i}\t{end - 5}\t{end}\t500\t7000\t{code}\n" for i, (end, code) in enumerate(boxes, start=1)))
    config = tmp_path / "head.json"
    config.write_text(json.dumps({"epoch_samples": 64, "head_training": {"crops_per_clip": 2},
                                  "pseudo": {"n_windows": 24, "block_windows": 24}}))
    out = tmp_path / "run"
    assert main(["--log-level", "WARNING", "train", "--backbone", "backbone", "--backbone-store", str(backbone_store),
                 "--raven-tables", str(table), "--raven-audio", str(head_data / "soundscapes"), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--epochs", "2", "--config", str(config)]) == 0
    ckpt = HeadCheckpoint.load(out / "best.pt")
    assert ckpt.codes == sorted({code for _, code in boxes}) and ckpt.train_config["raven"]["tables"] == str(table)


def test_embeddings_are_cached_and_a_second_run_computes_none(head_run, head_data, backbone_store):
    first = json.loads((head_run / "embeddings.json").read_text())
    assert first["train"]["computed"] == first["train"]["windows"] == 4 * 8  # 4 crops of 8 training clips
    assert first["train"]["model_windows"] == 3 and first["train"]["dim"] == 4  # 2-s windows at 0, 2, 3 s
    assert {k: v["computed"] > 0 for k, v in first["validation"].items()} == {
        "pseudo_soundscapes": True, "clips": True, "soundscapes": True}
    again = head_run.parent / "again"
    config = head_run.parent / "head.json"
    assert main(train_args(head_data, backbone_store, again, "--head", "mlp", "--config", str(config))) == 0
    second = json.loads((again / "embeddings.json").read_text())
    assert second["train"]["computed"] == 0 and second["train"]["file"] == first["train"]["file"]
    assert all(v["computed"] == 0 for v in second["validation"].values())
    assert [r["padded_cmap"] for r in metrics(again)] == [r["padded_cmap"] for r in metrics(head_run)]
    other = head_run.parent / "other-seed"
    assert main(train_args(head_data, backbone_store, other, "--config", str(config), "--seed", "1",
                           "--epochs", "1")) == 0
    assert json.loads((other / "embeddings.json").read_text())["train"]["computed"] == 32  # other crops


@pytest.fixture(scope="module")
def head_store(head_run, tmp_path_factory) -> Path:
    """A store whose 'birds' v1 is a plain tiny waveform model (production) and v2 the exported head."""
    root = tmp_path_factory.mktemp("head-store") / "store"
    make_store(root, kind="waveform")
    assert main(["--log-level", "WARNING", "export", str(head_run / "best.pt"), "--store", str(root),
                 "--name", "birds"]) == 0
    return root


def test_export_registers_one_pipeline_with_its_card(head_store, head_run):
    store = ModelStore(head_store)
    card = store.card("birds", 2)
    assert store.production("birds") == 1  # not promoted
    assert card.head is not None and card.head.kind == "mlp" and card.head.file == "head.onnx"
    assert card.head.input.name == "embedding" and card.head.input.shape == [None, 4]
    assert card.head.backbone.name == "backbone" and card.head.backbone.version == 1 and card.head.backbone.labels == 4
    assert card.outputs[0].name == "logits" and card.outputs[1].name == "energy" and card.codes == sorted(SPECIES)
    assert card.runtime == "onnxruntime" and card.frontend.input == "waveform" and card.license == "CC0-1.0"
    assert card.source.origin == "backbone v1 (tiny-waveform)" and card.source.sha256 == card.head.backbone.sha256
    assert card.training["export"]["max_abs_diff_probabilities"] <= 1e-4
    assert card.metrics["padded_cmap"] == HeadCheckpoint.load(head_run / "best.pt").metrics["padded_cmap"]
    folder = store.version_dir("birds", 2)
    assert {p.name for p in folder.iterdir()} >= {"model.onnx", "head.onnx", "card.json", "metrics.csv", "README.md"}
    assert "Head: mlp on `energy` of backbone v1" in (folder / "README.md").read_text()


def test_export_parity_accepts_the_head_and_refuses_a_perturbed_one(head_store, head_run, head_data):
    model = ModelStore(head_store).load("birds", 2)
    head = HeadCheckpoint.load(head_run / "best.pt").model()
    windows = np.stack([np.resize(decode(p, sample_rate=16000).samples, 80000)
                        for p in sorted((head_data / "train_audio").rglob("*.wav"))[:6]])
    assert check_head_parity(Engine(model), head, windows) <= 1e-4
    graph = onnx.load_from_string(model.head_bytes)
    bias = next(t for t in graph.graph.initializer if t.name == "b1")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(0.01), "b1"))
    perturbed = VerifiedModel(card=model.card, onnx_bytes=model.onnx_bytes, path=model.path,
                              head_bytes=graph.SerializeToString())
    with pytest.raises(ExportError, match="differs from the PyTorch head"):
        check_head_parity(Engine(perturbed), head, windows)


def test_store_verifies_the_head_file_too(head_store, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(head_store, copy)
    head = copy / "birds" / "v2" / "head.onnx"
    head.write_bytes(head.read_bytes()[:-1] + b"\x00")
    with pytest.raises(StoreError) as err:
        ModelStore(copy).load("birds", 2)
    assert err.value.code == StoreErrorCode.CHECKSUM and "head.onnx" in err.value.message
    with pytest.raises(StoreError, match="head.onnx"):
        load_folder(copy / "birds" / "v2")
    head.unlink()
    with pytest.raises(StoreError) as err:
        ModelStore(copy).load("birds", 2)
    assert err.value.code == StoreErrorCode.NOT_FOUND


def test_export_of_a_head_whose_backbone_changed_is_refused(head_run, backbone_store, tmp_path):
    moved = tmp_path / "backbone"
    shutil.copytree(backbone_store / "backbone" / "v1", moved)
    ckpt = HeadCheckpoint.load(head_run / "best.pt")
    HeadCheckpoint(**{**ckpt.__dict__, "backbone_folder": str(moved)}).save(tmp_path / "head.pt")
    (moved / "model.onnx").write_bytes((moved / "model.onnx").read_bytes() + b"\x00")
    out = subprocess.run([sys.executable, "-m", "soundscape.cli", "export", str(tmp_path / "head.pt"), "--store",
                          str(tmp_path / "store")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "sha256" in out.stderr, out.stderr
    assert not (tmp_path / "store").exists()


def test_composed_model_serves_analyzes_and_hot_reloads(make_server, head_store, head_data, tmp_path):
    srv = make_server(store=head_store, admin_token=ADMIN_TOKEN)
    rec = head_data / "soundscapes" / "S01.wav"
    data = rec.read_bytes()
    before = srv.client.post("/v1/predict", content=data, headers={"Content-Type": "audio/wav"},
                             params={"threshold": 0}).json()
    assert before["model"]["version"] == 1
    r = srv.client.post("/v1/admin/promote/2", headers=AUTH)  # hot reload: plain waveform model -> backbone + head
    assert r.status_code == 200 and r.json()["served"]["version"] == 2, r.text
    body = srv.client.post("/v1/predict", content=data, headers={"Content-Type": "audio/wav"},
                           params={"threshold": 0}).json()
    assert body["model"] == {"name": "birds", "version": 2} and len(body["windows"]) == 4
    served = np.asarray([[w["probabilities"][c] for c in sorted(SPECIES)] for w in body["windows"]])
    models = srv.client.get("/v1/models").json()
    assert models["card"]["head"]["kind"] == "mlp" and models["card"]["license"] == "CC0-1.0"

    res = subprocess.run([sys.executable, "-m", "soundscape.cli", "--log-level", "WARNING", "analyze", str(rec),
                          "--out", str(tmp_path / "out"), "--store", str(head_store), "--version", "2", "--format",
                          "json", "--threshold", "0", "--workers", "1", "--no-progress", "--embeddings"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    analyzed = json.loads((tmp_path / "out" / "S01.json").read_text())
    got = np.asarray([[w["probabilities"][c] for c in sorted(SPECIES)] for w in analyzed["windows"]])
    np.testing.assert_allclose(got, served, atol=1e-6)
    direct = Engine(ModelStore(head_store).load("birds", 2)).predict(decode(rec, sample_rate=16000))
    np.testing.assert_allclose(direct.probabilities, served, atol=1e-6)
    assert served[0].argmax() == sorted(SPECIES).index("lowpee")  # the window with only that caller
    assert (tmp_path / "out" / "S01.embeddings.parquet").is_file() or list((tmp_path / "out").glob("*.parquet"))
