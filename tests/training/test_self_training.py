"""Self-training: the confidence policy, round keeping/dropping, pseudo-label caching, resume mid-round, a real run."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import training.self_training as st
from tests.training.conftest import SPECIES, call, fast_config
from training import Checkpoint, train
from training.config import SelfTrainingConfig
from training.result import TrainResult


def test_confidence_policy_sharpens_and_turns_quiet_windows_into_negatives():
    policy = SelfTrainingConfig(power=2.0, floor=0.1, min_target=0.05)
    probs = np.array([[0.9, 0.5, 0.2, 0.01], [0.09, 0.05, 0.02, 0.0]])
    q = policy.targets(probs)
    assert q[0, 0] == pytest.approx(0.81 / (0.81 + 0.01), abs=1e-4)  # 0.9 -> 0.988: more confident
    assert q[0, 1] == pytest.approx(0.5) and q[0, 2] == pytest.approx(0.04 / (0.04 + 0.64), abs=1e-4)
    assert q[0, 3] == 0.0  # below min_target after sharpening
    assert not q[1].any()  # top probability under the floor: a negative window


def test_negative_share_makes_negatives_of_the_least_confident_windows_even_above_the_floor():
    policy = SelfTrainingConfig(power=1.0, floor=0.1, min_target=0.0, negative_share=0.25)
    top = np.array([0.6, 0.15, 0.9, 0.3, 0.12, 0.8, 0.5, 0.7])  # every window over the floor
    probs = np.stack([top, top / 2], axis=1)
    q = policy.targets(probs)
    assert policy.negatives(probs).tolist() == [False, True, False, False, True, False, False, False]
    assert not q[[1, 4]].any() and q[[0, 2, 3, 5, 6, 7]].all()
    assert SelfTrainingConfig(negative_share=0.0, floor=0.1).negatives(probs).sum() == 0
    assert SelfTrainingConfig(negative_share=0.0, floor=0.2).negatives(probs).tolist() == [
        False, True, False, False, True, False, False, False]


def _fake_round(metrics: dict[int, float], calls: list, fail_round: int | None = None):
    """A stand-in for one training run: writes best.pt/last.pt and reports the given metric per round."""

    def run(cfg, pseudo_labels=None):
        r = int(cfg.out_dir.name.removeprefix("round"))
        calls.append((r, cfg.resume, None if pseudo_labels is None else len(pseudo_labels.files),
                      None if cfg.checkpoint is None else cfg.checkpoint.parent.name))
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        (cfg.out_dir / "last.pt").write_text(f"round {r}")
        if r == fail_round:
            raise KeyboardInterrupt
        (cfg.out_dir / "best.pt").write_text(f"best of round {r}")
        return TrainResult(run_dir=cfg.out_dir, best_checkpoint=cfg.out_dir / "best.pt",
                           last_checkpoint=cfg.out_dir / "last.pt", metrics={"padded_cmap": metrics[r]},
                           history=[{"epoch": 1, "padded_cmap": metrics[r]}])

    return run


@pytest.fixture
def cached_pseudo_labels(monkeypatch):
    """Pseudo-labelling counted instead of run (no real teacher in these tests)."""
    made = []

    def label(teacher, cfg, **kw):
        made.append(teacher)
        return st.PseudoLabels(files=["a.wav", "a.wav"], starts_s=np.array([0.0, 5.0]),
                               probs=np.array([[0.9, 0.0], [0.0, 0.0]], np.float32), codes=["x", "y"])

    monkeypatch.setattr(st, "label_unlabelled", label)
    return made


def test_rounds_are_kept_only_while_they_improve(tiny_data, tmp_path, cached_pseudo_labels):
    cfg = fast_config(tiny_data, tmp_path / "run", unlabelled_dir=tiny_data / "soundscapes",
                      self_training={"rounds": 3})
    calls: list = []
    result = st.self_train(cfg, _fake_round({0: 0.5, 1: 0.6, 2: 0.55, 3: 0.9}, calls))
    assert [c[0] for c in calls] == [0, 1, 2]  # round 2 did not improve: dropped, round 3 never ran
    assert calls[1][3] == "round0" and calls[2][3] == "round1"  # each student starts from the best teacher
    assert calls[1][2] == calls[2][2] == 2  # trained with the pseudo-labelled windows
    assert cached_pseudo_labels == [tmp_path / "run" / "round0" / "best.pt", tmp_path / "run" / "round1" / "best.pt"]
    assert (tmp_path / "run" / "best.pt").read_text() == "best of round 1"
    assert result.best_checkpoint == tmp_path / "run" / "best.pt" and result.metrics["padded_cmap"] == 0.6
    state = json.loads((tmp_path / "run" / st.STATE_FILE).read_text())
    assert state["best_round"] == 1 and [r["kept"] for r in state["rounds"]] == [True, True, False]
    with open(tmp_path / "run" / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 3


def test_a_first_student_that_does_not_improve_leaves_round_zero(tiny_data, tmp_path, cached_pseudo_labels):
    cfg = fast_config(tiny_data, tmp_path / "run", unlabelled_dir=tiny_data / "soundscapes",
                      self_training={"rounds": 2})
    result = st.self_train(cfg, _fake_round({0: 0.5, 1: 0.5, 2: 0.9}, []))
    assert (tmp_path / "run" / "best.pt").read_text() == "best of round 0" and result.metrics["padded_cmap"] == 0.5


def test_resume_mid_round_reuses_finished_rounds_and_cached_pseudo_labels(tiny_data, tmp_path, cached_pseudo_labels):
    cfg = fast_config(tiny_data, tmp_path / "run", unlabelled_dir=tiny_data / "soundscapes",
                      self_training={"rounds": 2})
    calls: list = []
    with pytest.raises(KeyboardInterrupt):
        st.self_train(cfg, _fake_round({0: 0.5, 1: 0.6, 2: 0.7}, calls, fail_round=1))
    assert (tmp_path / "run" / "round1" / st.PSEUDO_FILE).is_file() and len(cached_pseudo_labels) == 1
    calls.clear()
    result = st.self_train(cfg.model_copy(update={"resume": True}), _fake_round({0: 0.5, 1: 0.6, 2: 0.7}, calls))
    # round 0 is re-read (resume of a finished run), round 1 resumes from its last.pt, round 2 starts fresh
    assert [(c[0], c[1]) for c in calls] == [(0, True), (1, True), (2, False)]
    assert len(cached_pseudo_labels) == 2  # round 1's pseudo-labels came from the cache; round 2's are new
    assert result.metrics["padded_cmap"] == 0.7


def test_a_real_self_training_run_trains_a_student_on_pseudo_labelled_windows(tiny_data, tmp_path):
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    rng = np.random.default_rng(5)
    for i, code in enumerate(SPECIES):  # 12 s: a call in the first window, then quiet
        audio = 0.01 * rng.standard_normal(12 * 16000).astype(np.float32)
        audio[: 5 * 16000] += call(SPECIES[code][0], 5.0, 16000, rng)
        sf.write(unlabelled / f"site_{i}.flac", audio, 16000)
    cfg = fast_config(tiny_data, tmp_path / "run", epochs=2, unlabelled_dir=unlabelled,
                      self_training={"rounds": 1, "floor": 0.0})
    result = train(cfg)
    state = json.loads((tmp_path / "run" / st.STATE_FILE).read_text())
    assert [r["round"] for r in state["rounds"]] == [0, 1] and state["rounds"][1]["pseudo_windows"] == 6
    labels = st.PseudoLabels.load(tmp_path / "run" / "round1" / st.PSEUDO_FILE)
    assert labels.probs.shape == (6, len(SPECIES)) and labels.codes == sorted(SPECIES)  # 2 s tails dropped
    # site_0 gives the validation's beds (every 4th recording): never pseudo-labelled or trained on
    assert sorted({Path(f).name for f in labels.files}) == ["site_1.flac", "site_2.flac", "site_3.flac"]
    kept = state["best_round"]
    assert Checkpoint.load(result.best_checkpoint).epoch == Checkpoint.load(
        tmp_path / "run" / f"round{kept}" / "best.pt").epoch
    student = Checkpoint.load(tmp_path / "run" / "round1" / "last.pt")
    assert student.train_config["checkpoint"].endswith("round0/best.pt")  # started from the teacher
    shutil.rmtree(tmp_path / "run")
