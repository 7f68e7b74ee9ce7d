"""End-to-end training runs: outputs and checkpoint format, held-out validation, resume, DDP, CLI."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from soundscape.audio.transforms import LogMelSpectrogram
from soundscape.cli import main
from tests.training.conftest import SPECIES, fast_config
from training import AugmentConfig, Checkpoint, load_checkpoint, train
from training.checkpoint import REQUIRED_KEYS
from training.export import model_from_checkpoint
from training.metrics import score_blocks
from training.validation import selection_validation

ROOT = Path(__file__).resolve().parents[2]


def test_run_with_soundscape_validation_writes_everything(tiny_data, tmp_path):
    cfg = fast_config(tiny_data, tmp_path / "run", epochs=2, soundscapes_labels=tiny_data / "soundscape_labels.csv",
                      soundscapes_dir=tiny_data / "soundscapes")
    result = train(cfg)
    run = result.run_dir
    for name in ("best.pt", "last.pt", "metrics.csv", "curves.png", "problems.csv"):
        assert (run / name).is_file(), name
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and len(result.history) == 2
    assert {"macro_roc_auc", "padded_cmap"} <= set(result.metrics)
    problems = (run / "problems.csv").read_text()
    assert "broken.wav" in problems and "gone.ogg" in problems
    raw = load_checkpoint(result.last_checkpoint)  # the dict on disk
    assert set(REQUIRED_KEYS) <= set(raw) and raw["format"] == 1 and raw["epoch"] == 2
    assert [lab["code"] for lab in raw["labels"]] == sorted(SPECIES) and raw["data"]["val_soundscapes"] == 1
    ckpt = Checkpoint.load(result.last_checkpoint)
    assert ckpt.epoch == 2 and ckpt.codes == sorted(SPECIES) and ckpt.to_dict().keys() == raw.keys()
    assert ckpt.data.val_soundscapes == 1 and ckpt.data.skipped_files == 3
    assert ckpt.frontend.n_mels == 32 and ckpt.train_config["arch"] == "test_efficientnet"
    from training import create_model

    model = create_model(ckpt.arch, **ckpt.model_kwargs)
    model.load_state_dict(ckpt.state_dict)  # B's export path


def test_every_validation_set_is_logged_and_pseudo_soundscapes_select(tiny_data, tmp_path):
    cfg = fast_config(tiny_data, tmp_path / "run", loss="focal", augment=AugmentConfig.off(), sampling_alpha=0.0,
                      val_fraction=0.34, soundscapes_labels=tiny_data / "soundscape_labels.csv",
                      soundscapes_dir=tiny_data / "soundscapes")
    result = train(cfg)
    ckpt = Checkpoint.load(result.best_checkpoint)
    # max(1, round(n * 0.34)) whole clips: amered 6 -> 2, bkcchi 4 -> 1, comrav 3 -> 1, + houspa's one clip's end
    assert ckpt.data.val_clips == 5 and ckpt.data.val_soundscapes == 1
    row = result.history[0]
    # each logged metric is that model's score on that set, recomputed here from the checkpoint alone
    model, melspec = model_from_checkpoint(ckpt).eval(), LogMelSpectrogram(cfg.frontend)
    for kind in ("pseudo_soundscapes", "clips", "soundscapes"):
        vd = selection_validation(cfg.model_copy(update={"validation": kind}), [lab.code for lab in ckpt.labels])
        with torch.no_grad():
            probs = torch.sigmoid(model(melspec(torch.from_numpy(vd.windows)))).numpy()
        scores = score_blocks(vd.targets, probs, vd.codes, vd.blocks)
        assert row[f"{kind}_padded_cmap"] == pytest.approx(scores["padded_cmap"], abs=1e-5), kind
        assert row[f"{kind}_macro_roc_auc"] == pytest.approx(scores["macro_roc_auc"], abs=1e-5), kind
    assert row["padded_cmap"] == row["pseudo_soundscapes_padded_cmap"]  # the selecting set
    assert row["padded_cmap"] != row["clips_padded_cmap"] or row["padded_cmap"] != row["soundscapes_padded_cmap"]
    info = ckpt.validation
    assert info.selected_by == "pseudo_soundscapes" and info.monitor == "padded_cmap"
    assert set(info.sets) == {"pseudo_soundscapes", "clips", "soundscapes"}
    pseudo = info.sets["pseudo_soundscapes"]
    assert "24 windows" in pseudo and "generated noise" in pseudo
    with open(result.run_dir / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert {"pseudo_soundscapes_padded_cmap", "clips_padded_cmap", "soundscapes_padded_cmap"} <= set(header)


def test_early_stopping_and_best_checkpoint_follow_the_pseudo_soundscapes(tiny_data, tmp_path):
    # float32 steps: this lr was chosen so that the tiny model's metric stalls within 8 epochs in float32
    # (bfloat16 autocast takes another path); the rule replayed below does not depend on the precision.
    cfg = fast_config(tiny_data, tmp_path / "run", epochs=8, lr=3e-2, warmup_epochs=0, max_steps_per_epoch=1,
                      early_stopping_patience=2, soundscapes_labels=tiny_data / "soundscape_labels.csv",
                      soundscapes_dir=tiny_data / "soundscapes", amp=False, channels_last=False)
    result = train(cfg)
    pseudo = [h["pseudo_soundscapes_padded_cmap"] for h in result.history]
    best_so_far, bad, stop = -1.0, 0, None
    for i, value in enumerate(pseudo):  # the rule, replayed on the logged pseudo-soundscape metric alone
        best_so_far, bad = (value, 0) if value > best_so_far else (best_so_far, bad + 1)
        if bad >= 2:
            stop = i
            break
    assert stop is not None, f"never stopped early: {pseudo}"
    assert len(result.history) == stop + 1
    best_epoch = result.history[max(range(len(pseudo)), key=lambda i: (pseudo[i], -i))]["epoch"]
    assert Checkpoint.load(result.best_checkpoint).epoch == best_epoch
    assert result.metrics["padded_cmap"] == pytest.approx(max(pseudo))
    # the tracking measurement of bench/quality.py: the labelled soundscapes are logged every epoch beside it
    from training.metrics import tracking

    labelled = [h["soundscapes_padded_cmap"] for h in result.history]
    t = tracking(pseudo, labelled)
    assert t["max_abs_diff"] == pytest.approx(max(abs(a - b) for a, b in zip(pseudo, labelled, strict=True)))


def test_resume_after_interruption_matches_an_uninterrupted_run(tiny_data, tmp_path):
    straight = train(fast_config(tiny_data, tmp_path / "a", epochs=2))

    def interrupt(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    cfg = fast_config(tiny_data, tmp_path / "b", epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_epoch_end=interrupt)
    assert Checkpoint.load(tmp_path / "b" / "last.pt").epoch == 1
    resumed = train(cfg.model_copy(update={"resume": True}))
    a, b = Checkpoint.load(straight.last_checkpoint), Checkpoint.load(resumed.last_checkpoint)
    assert b.epoch == 2 and [h["epoch"] for h in resumed.history] == [1, 2]
    for key, tensor in a.state_dict.items():
        assert torch.equal(tensor, b.state_dict[key]), key
    assert a.history[1]["train_loss"] == pytest.approx(b.history[1]["train_loss"], abs=1e-6)
    with pytest.raises(FileNotFoundError, match="last.pt"):
        train(fast_config(tiny_data, tmp_path / "c", resume=True))


def test_two_process_ddp_run_via_torchrun_and_cli(tiny_data, tmp_path):
    cfg = fast_config(tiny_data, tmp_path / "ddp", epochs=1, batch_size=2,
                      soundscapes_labels=tiny_data / "soundscape_labels.csv", soundscapes_dir=tiny_data / "soundscapes")
    config = tmp_path / "config.json"
    config.write_text(cfg.model_dump_json())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "soundscape.cli", "train", "--config", str(config)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = Checkpoint.load(tmp_path / "ddp" / "last.pt")
    assert ckpt.epoch == 1 and len(ckpt.rng["ranks"]) == 2
    assert not any(k.startswith("module.") for k in ckpt.state_dict)
    with open(tmp_path / "ddp" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1  # one writer: rank 0


def test_cli_help_and_bad_paths(tmp_path, capsys, caplog, tiny_data):
    proc = subprocess.run([sys.executable, "-m", "soundscape.cli", "train", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--metadata" in proc.stdout and "--resume" in proc.stdout
    missing = tmp_path / "no_such_metadata.csv"
    code = main(["train", "--metadata", str(missing), "--audio-root", str(tmp_path), "--out", str(tmp_path / "r")])
    assert code == 2 and "no_such_metadata.csv" in caplog.text
    bad = tmp_path / "bad.csv"
    bad.write_text("species,path\na,b\n")
    code = main(["train", "--metadata", str(bad), "--audio-root", str(tiny_data / "train_audio"),
                 "--out", str(tmp_path / "r"), "--arch", "test_efficientnet", "--no-pretrained"])
    assert code == 2 and "bad.csv" in caplog.text and "primary_label" in caplog.text
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"metadata": str(bad), "epochs": 0}))
    assert main(["train", "--config", str(config), "--audio-root", str(tmp_path), "--out", str(tmp_path)]) == 2
