"""Card-declared smoothing is applied identically by the service and ``soundscape analyze``, whole or streamed.

Two stores serve the same network (tiny model, seed 0): ``store_root`` with the default card (no smoothing)
and ``smooth_store`` whose card declares ``neighbours`` smoothing with asymmetric weights.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from model_store import ModelStore
from model_store.card import Postprocess
from soundscape.analyze import AnalyzeSettings, run_analysis
from soundscape.audio import decode
from soundscape.inference import Engine
from tests.test_postprocess import by_hand_neighbours
from tests.utils.models import make_store
from tests.utils.server import Server

from .conftest import output_files, tone_noise

RULE = Postprocess(smoothing="neighbours", neighbour_weights=(0.2, 0.5, 0.3))
FILES = ["dawn_01", "long", "short", "site2/night"]
FORMATS = ["json", "birdclef", "csv", "raven"]
THRESHOLD = 0.3


@pytest.fixture(scope="module")
def smooth_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("smooth-store") / "store"
    make_store(root, postprocess=RULE)
    return root


@pytest.fixture(scope="module")
def inputs(recordings, tmp_path_factory) -> Path:
    """A 48.1 s file (10 windows, partial last one), a one-window file, and two of the shared recordings."""
    root = tmp_path_factory.mktemp("smooth-in") / "in"
    (root / "site2").mkdir(parents=True)
    sf.write(root / "long.wav", tone_noise(48.1, 22050, 4), 22050, subtype="PCM_16")
    sf.write(root / "short.wav", tone_noise(3.0, 16000, 5), 16000)
    shutil.copy(recordings / "dawn_01.wav", root / "dawn_01.wav")
    shutil.copy(recordings / "site2" / "night.ogg", root / "site2" / "night.ogg")
    return root


@pytest.fixture(scope="module")
def service(smooth_store, tmp_path_factory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("smooth-service"), smooth_store)
    yield srv
    srv.stop()


def analyse(store: Path, inputs: Path, out: Path, **settings) -> tuple[Path, dict]:
    s = AnalyzeSettings(**{"inputs": [str(inputs)], "out": out, "store": store, "workers": 1, "formats": FORMATS,
                           "threshold": THRESHOLD, **settings})
    return out, run_analysis(s, progress=False)


@pytest.fixture(scope="module")
def runs(smooth_store, store_root, inputs, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    tmp = tmp_path_factory.mktemp("smooth-out")
    return {
        "whole": analyse(smooth_store, inputs, tmp / "whole", block_s=3600),
        "streamed": analyse(smooth_store, inputs, tmp / "streamed", block_s=3.3),  # long.wav: 15 blocks
        "plain": analyse(store_root, inputs, tmp / "plain"),  # same network, card without smoothing
    }


def post(service: Server, path: Path, **params) -> dict:
    r = service.client.post("/v1/predict", params=params,
                            files={"file": (path.name, path.read_bytes(), "application/octet-stream")})
    assert r.status_code == 200, r.text
    return r.json()


def probabilities(doc: dict) -> np.ndarray:
    return np.array([list(w["probabilities"].values()) for w in doc["windows"]])


def submission(path: Path) -> np.ndarray:
    """Every window's every probability, from a BirdCLEF file (no threshold there)."""
    with open(path, newline="") as f:
        return np.array([[float(v) for v in row[1:]] for row in list(csv.reader(f))[1:]])


def assert_same_answer(got: dict, doc: dict) -> None:
    """Analyze's JSON equals the service's: every field but the timings, probabilities to float noise."""
    got, doc = dict(got), dict(doc)
    assert set(got.pop("timings")) == set(doc.pop("timings"))
    assert list(got) == list(doc)
    for key in ("model", "postprocess", "audio"):
        assert got[key] == doc[key], key
    assert [(w["start_s"], w["end_s"], w["row_id"]) for w in got["windows"]] == [
        (w["start_s"], w["end_s"], w["row_id"]) for w in doc["windows"]]
    np.testing.assert_allclose(probabilities(got), probabilities(doc), rtol=0, atol=1.5e-6)
    assert list(got["summary"]) == list(doc["summary"])
    assert got["summary"] == pytest.approx(doc["summary"], abs=1.5e-6)


def test_streamed_outputs_are_byte_identical_to_the_whole_file(runs):
    whole, streamed = output_files(runs["whole"][0]), output_files(runs["streamed"][0])
    assert sorted(whole) == sorted(streamed)
    assert {f"{rel}{suffix}" for rel in FILES for suffix in (".json", ".submission.csv")} <= set(whole)
    assert whole == streamed
    expected = {"smoothing": "neighbours", "applied": True, "neighbour_offset": 1,
                "neighbour_weights": [0.2, 0.5, 0.3], "damping": None, "note": ""}
    assert runs["whole"][1]["postprocess"] == runs["streamed"][1]["postprocess"] == expected
    assert runs["plain"][1]["postprocess"]["applied"] is False
    doc = json.loads((runs["streamed"][0] / "long.json").read_text())
    assert doc["audio"]["windows"] == 10 and doc["postprocess"] == expected


@pytest.mark.parametrize("rel", FILES)
def test_service_and_analyze_give_the_same_smoothed_answer(runs, service, inputs, rel):
    source = next(inputs.glob(f"{rel}.*"))
    doc = post(service, source, threshold=THRESHOLD)
    assert doc["postprocess"]["applied"] is True
    for run in ("whole", "streamed"):
        got = json.loads((runs[run][0] / f"{rel}.json").read_text())
        assert got["timings"] == dict.fromkeys(doc["timings"], 0)
        assert {**got, "timings": None} == {**doc, "timings": None}  # the same renderer: identical


@pytest.mark.parametrize("rel", FILES)
def test_smoothing_is_applied_and_changes_the_answer(runs, rel):
    """The smoothed card's numbers are the plain card's numbers smoothed by hand, and they differ from them."""
    raw = submission(runs["plain"][0] / f"{rel}.submission.csv")
    got = submission(runs["streamed"][0] / f"{rel}.submission.csv")
    np.testing.assert_allclose(got, by_hand_neighbours(raw, (0.2, 0.5, 0.3), 1), rtol=0, atol=2e-6)
    if len(raw) == 1:
        np.testing.assert_allclose(got, raw, atol=1e-6)  # one window: nothing to smooth with
    else:
        assert np.abs(got - raw).max() > 1e-3
    # the JSON's windows and summary carry the smoothed numbers, after the threshold
    smoothed = json.loads((runs["streamed"][0] / f"{rel}.json").read_text())
    header = (runs["streamed"][0] / f"{rel}.submission.csv").read_text().splitlines()[0].split(",")[1:]
    for w, row in zip(smoothed["windows"], got, strict=True):
        assert w["probabilities"] == pytest.approx({c: p for c, p in zip(header, row, strict=True) if p >= THRESHOLD},
                                                   abs=1e-6)
    best = got.max(axis=0)
    assert smoothed["summary"] == pytest.approx({c: p for c, p in zip(header, best, strict=True) if p >= THRESHOLD},
                                                abs=1e-6)
    # detections carry the smoothed numbers too
    with open(runs["streamed"][0] / f"{rel}.detections.csv", newline="") as f:
        dets = [(r["row_id"], r["code"], float(r["confidence"])) for r in csv.DictReader(f)]
    want = [(w["row_id"], c, p) for w in smoothed["windows"]
            for c, p in sorted(w["probabilities"].items(), key=lambda cp: -cp[1])]
    assert [(r, c) for r, c, _ in dets] == [(r, c) for r, c, _ in want]


def test_filters_summary_and_batch_use_the_smoothed_probabilities(service, inputs):
    long = inputs / "long.wav"
    full = post(service, long)
    filtered = post(service, long, threshold=0.4, top_k=2)
    for fw, tw in zip(full["windows"], filtered["windows"], strict=True):
        best = sorted(((c, p) for c, p in fw["probabilities"].items() if p >= 0.4), key=lambda cp: -cp[1])[:2]
        assert tw["probabilities"] == dict(best)
    assert full["summary"] == {c: max(w["probabilities"][c] for w in full["windows"]) for c in full["summary"]}
    r = service.client.post("/v1/predict/batch", files=[("files", ("long.wav", long.read_bytes(), "audio/wav"))])
    assert r.status_code == 200, r.text
    item = r.json()["results"][0]["result"]
    assert item["postprocess"] == full["postprocess"]
    np.testing.assert_allclose(probabilities(item), probabilities(full), atol=1.5e-6)


def test_csv_answer_is_smoothed_and_says_so(runs, service, inputs):
    r = service.client.post("/v1/predict", params={"format": "csv"},
                            files={"file": ("long.wav", (inputs / "long.wav").read_bytes(), "audio/wav")})
    assert r.status_code == 200
    assert r.headers["X-Postprocess"] == "smoothing=neighbours; applied=true; neighbour_offset=1"
    rows = list(csv.reader(io.StringIO(r.text)))
    with open(runs["whole"][0] / "long.submission.csv", newline="") as f:
        ours = list(csv.reader(f))
    assert [row[0] for row in rows] == [row[0] for row in ours]
    np.testing.assert_allclose([[float(v) for v in row[1:]] for row in rows[1:]],
                               [[float(v) for v in row[1:]] for row in ours[1:]], atol=1.5e-6)


@pytest.mark.parametrize(("hop", "offset"), [(2.5, 2), (2.0, None)])
def test_other_hops_agree_between_service_and_analyze(smooth_store, service, inputs, tmp_path, hop, offset):
    """hop 2.5: neighbours are the windows 2 apart (one card hop); hop 2: no window one card hop away,
    smoothing skipped and said so, probabilities are the model's own."""
    long = inputs / "long.wav"
    doc = post(service, long, hop_s=hop)
    out, summary = analyse(smooth_store, long, tmp_path / "out", hop_s=hop, block_s=3.3, formats=["json"],
                           threshold=None)
    got = json.loads((out / "long.json").read_text())
    assert_same_answer(got, doc)
    report = doc["postprocess"]
    assert summary["postprocess"] == report
    assert (report["applied"], report["neighbour_offset"]) == (offset is not None, offset)
    model = ModelStore(smooth_store).load("birds")
    raw = Engine(model).predict(decode(long, sample_rate=16000), hop_s=hop, postprocess=False).probabilities
    if offset is None:
        assert "hop_s=2" in report["note"]
        np.testing.assert_allclose(probabilities(doc), raw, atol=1.5e-6)
    else:
        np.testing.assert_allclose(probabilities(doc), by_hand_neighbours(raw, (0.2, 0.5, 0.3), offset),
                                   atol=1.5e-6)
        assert np.abs(probabilities(doc) - raw).max() > 1e-3


@pytest.mark.parametrize("hop", [5.0, 2.5, 1.0])
@pytest.mark.parametrize("block_s", [3600.0, 3.3], ids=["whole", "streamed"])
def test_analyze_writes_the_services_answers_at_every_hop(smooth_store, service, inputs, tmp_path, hop, block_s):
    """Acceptance: through the one pipeline and renderer, analyze's JSON is the service's JSON for the same file
    and options (all but the timings, which files do not carry), and its BirdCLEF file the service's CSV, byte
    for byte: whole files and streamed blocks, at the card's hop and at 2.5 s and 1 s (smoothed 2 and 5 apart)."""
    out, summary = analyse(smooth_store, inputs, tmp_path / "out", hop_s=hop, block_s=block_s,
                           formats=["json", "birdclef"])
    assert summary["postprocess"]["neighbour_offset"] == round(5.0 / hop)
    for rel in FILES:
        source = next(inputs.glob(f"{rel}.*"))
        doc = post(service, source, hop_s=hop, threshold=THRESHOLD)
        got = json.loads((out / f"{rel}.json").read_text())
        assert {**got, "timings": None} == {**doc, "timings": None}, rel
        r = service.client.post("/v1/predict", params={"hop_s": hop, "format": "csv"},
                                files={"file": (source.name, source.read_bytes(), "application/octet-stream")})
        assert r.text == (out / f"{rel}.submission.csv").read_text(), rel
