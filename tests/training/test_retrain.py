"""Retrain: promote a better challenger, keep a better champion; exit codes, reports, store pointer."""

from __future__ import annotations

import json

import pytest

from model_store import ModelStore
from soundscape.cli import main
from tests.training.conftest import fast_config
from tests.utils.checkpoints import write_fitted_onnx, write_soundscapes
from tests.utils.models import DEFAULT_CODES, tiny_card, tiny_frontend
from training.evaluate import load_validation
from training.retrain import RetrainConfig, RetrainExit, retrain


@pytest.fixture(scope="module")
def scapes(tmp_path_factory):
    return write_soundscapes(tmp_path_factory.mktemp("scapes"))


def config(tiny_data, scapes, tmp_path, **overrides) -> RetrainConfig:
    labels, folder = scapes
    train = fast_config(tiny_data, tmp_path / "run", soundscapes_labels=labels, soundscapes_dir=folder,
                        augment={"pitch_p": 0.0, "speed_p": 0.0})
    return RetrainConfig(train=train.model_dump(), store=tmp_path / "store", **overrides)


def test_first_model_is_promoted_then_a_better_champion_is_kept(tiny_data, scapes, tmp_path):
    report = retrain(config(tiny_data, scapes, tmp_path))
    first = dict(report.challenger_metrics)
    assert report.decision == "promoted" and report.exit_code == RetrainExit.PROMOTED == 0
    store = ModelStore(tmp_path / "store")
    assert store.production("birds") == 1 and report.challenger_version == 1 and report.champion_version is None
    saved = json.loads((tmp_path / "run" / "retrain_report.json").read_text())
    assert saved["decision"] == "promoted" and saved["production_version"] == 1
    assert "Decision: promoted" in (tmp_path / "run" / "retrain_report.md").read_text()

    # v1 is now the champion; a margin no challenger can reach keeps it
    report = retrain(config(tiny_data, scapes, tmp_path, margin=1.0, report_dir=tmp_path / "reports"))
    assert report.decision == "kept_champion" and report.exit_code == RetrainExit.KEPT_CHAMPION == 10
    assert store.production("birds") == 1  # pointer untouched
    assert store.versions("birds") == [1, 2] and report.challenger_version == 2  # registered, not promoted
    assert store.card("birds", 2).parent_version == 1
    saved = json.loads((tmp_path / "reports" / "retrain_report.json").read_text())
    # the champion is v1, scored again on the same validation windows: exactly its numbers as the first challenger
    assert saved["champion_version"] == 1 and saved["champion_metrics"] == pytest.approx(first, abs=1e-9)
    assert set(first) >= {"macro_roc_auc", "padded_cmap"}
    assert "| macro_roc_auc |" in (tmp_path / "reports" / "retrain_report.md").read_text()


def test_challenger_beating_the_champion_is_promoted(tiny_data, scapes, tmp_path):
    labels, folder = scapes
    val = load_validation(labels, folder, DEFAULT_CODES, tiny_frontend(), cache_dir=tmp_path / "cache")
    # a champion that ranks the validation windows backwards (ROC-AUC ~ 0)
    onnx_path = write_fitted_onnx(tmp_path / "bad.onnx", val.windows, val.targets, sign=-1.0)
    store = ModelStore(tmp_path / "store")
    store.register(tiny_card(tiny_frontend()), onnx_path, promote=True)
    report = retrain(config(tiny_data, scapes, tmp_path, margin=0.005))
    assert report.champion_metrics["macro_roc_auc"] < 0.2
    assert report.decision == "promoted" and report.exit_code == 0
    assert store.production("birds") == 2 and store.history("birds") == [1, 2]


def test_retrain_cli_exit_codes(tiny_data, scapes, tmp_path):
    labels, folder = scapes
    cfg = tmp_path / "config.json"
    cfg.write_text(fast_config(tiny_data, tmp_path / "unused", augment={"pitch_p": 0.0, "speed_p": 0.0})
                   .model_dump_json(exclude={"out_dir"}))
    base = ["retrain", "--config", str(cfg), "--out-dir", str(tmp_path / "run"), "--store", str(tmp_path / "store")]
    # a missing data folder: bad input, nothing registered
    assert main([*base, "--unlabelled", str(tmp_path / "no_such_folder")]) == RetrainExit.BAD_INPUT
    assert ModelStore(tmp_path / "store").versions("birds") == []
    assert json.loads((tmp_path / "run" / "retrain_report.json").read_text())["decision"] == "bad_input"
    rc = main([*base, "--soundscapes-labels", str(labels), "--soundscapes-dir", str(folder)])
    assert rc == RetrainExit.PROMOTED and ModelStore(tmp_path / "store").production("birds") == 1
    report = json.loads((tmp_path / "run" / "retrain_report.json").read_text())
    assert report["validation_set"] == "soundscapes"


def test_retrain_without_labelled_soundscapes_scores_both_models_on_one_pseudo_soundscape_set(tiny_data, tmp_path):
    store = ModelStore(tmp_path / "store")
    train = fast_config(tiny_data, tmp_path / "first", augment={"pitch_p": 0.0, "speed_p": 0.0})
    first = retrain(RetrainConfig(train=train.model_dump(), store=store.root, margin=0.0))
    assert first.decision == "promoted" and first.validation_set == "pseudo_soundscapes"
    assert first.validation_windows == 24 and "generated noise" in first.validation_detail
    card = store.load("birds").card
    assert card.validation.selected_by == card.validation.metrics_from == "pseudo_soundscapes"
    assert card.metrics["padded_cmap"] == first.challenger_metrics["padded_cmap"]
    # the same data and seed again: the same pseudo-soundscape windows, so both models score exactly alike
    again = retrain(RetrainConfig(train={**train.model_dump(), "out_dir": tmp_path / "second"}, store=store.root,
                                  margin=0.0))
    assert again.validation_windows == 24
    assert again.champion_metrics == pytest.approx(first.challenger_metrics)
    assert again.challenger_metrics == pytest.approx(again.champion_metrics)  # same seed, same weights
    assert again.decision == "promoted" and store.production("birds") == 2  # margin 0: a tie promotes
