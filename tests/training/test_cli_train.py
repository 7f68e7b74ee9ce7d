"""``soundscape train``: every augmentation knob in --help with its default, flags over the config file,
``--print-config`` round-trips through TrainConfig (no training)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from soundscape.cli import main
from training import AugmentConfig, TrainConfig
from training.cli_train import _shown

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_every_augmentation_knob_with_its_default():
    proc = subprocess.run([sys.executable, "-m", "soundscape.cli", "train", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # undo argparse's line wrapping
    assert "--print-config" in text and "--call-crop-p" in text
    text = text[text.index("augmentation:"):]  # the options, not the usage line
    for name, field in AugmentConfig.model_fields.items():
        flag = f"--aug-{name.replace('_', '-')}"
        match = re.search(re.escape(flag) + r"[ ,].*?\(default: ([^)]*)\)", text)
        assert match, f"{flag} is not in --help"
        assert match.group(1) == _shown(field.get_default(call_default_factory=True)), name
        assert field.description and field.description.split()[0] in text[match.start():match.end()], name


def print_config(argv, capsys) -> tuple[int, str]:
    code = main(["train", *argv, "--print-config"])
    return code, capsys.readouterr().out


def test_flags_override_the_config_file_and_print_config_round_trips(tiny_data, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "metadata": str(tiny_data / "train_metadata.csv"), "audio_root": str(tiny_data / "train_audio"),
        "out_dir": str(tmp_path / "run"), "epochs": 3,
        "augment": {"reverb_p": 0.9, "eq_p": 0.7, "distance_m": [20, 100]},
    }))
    code, out = print_config(["--config", str(config), "--aug-reverb-p", "0", "--aug-highpass-hz", "200", "800",
                              "--aug-noise-colors", "pink", "--no-aug-unlabelled-beds", "--epochs", "5",
                              "--call-crop-p", "0.5"], capsys)
    assert code == 0
    cfg = TrainConfig.model_validate_json(out)
    assert cfg == TrainConfig.model_validate(json.loads(out))
    aug = cfg.augment
    assert aug.reverb_p == 0.0 and aug.highpass_hz == (200.0, 800.0) and aug.noise_colors == ["pink"]
    assert not aug.unlabelled_beds and cfg.epochs == 5 and cfg.call_crop_p == 0.5
    assert aug.eq_p == 0.7 and aug.distance_m == (20.0, 100.0)  # the file's other values stay
    assert aug.lowpass_p == AugmentConfig().lowpass_p  # and the rest are the defaults
    assert not (tmp_path / "run").exists()  # nothing trained
    # --no-augment first, then the flags: only the named step is on
    code, out = print_config(["--config", str(config), "--no-augment", "--aug-eq-p", "0.4"], capsys)
    aug = TrainConfig.model_validate_json(out).augment
    assert code == 0 and aug.eq_p == 0.4 and aug.reverb_p == 0.0 and aug.mixup_p == 0.0
    # a bad value is refused with exit code 2, like any other setting
    assert print_config(["--config", str(config), "--aug-reverb-rt60-s", "1.0", "0.5"], capsys)[0] == 2


def test_micro_batch_flag_resolves_per_device_and_refuses_junk(tiny_data, tmp_path, capsys):
    base = ["--metadata", str(tiny_data / "train_metadata.csv"), "--audio-root", str(tiny_data / "train_audio"),
            "--out", str(tmp_path / "run")]
    expect = {None: ("auto", 8, None), "none": (0, None, None), "12": (12, 12, 12), "32": (32, None, None)}
    for flag, (value, cpu, cuda) in expect.items():
        code, out = print_config([*base, *(["--micro-batch", flag] if flag else [])], capsys)
        cfg = TrainConfig.model_validate_json(out)
        assert code == 0 and cfg.micro_batch == value, flag
        assert (cfg.micro_batch_on("cpu"), cfg.micro_batch_on("cuda")) == (cpu, cuda), flag  # batch_size 32
    with pytest.raises(SystemExit) as exc:
        main(["train", *base, "--micro-batch", "some", "--print-config"])
    assert exc.value.code == 2 and "'auto' or 'none'" in capsys.readouterr().err


def test_prefetch_is_on_for_gpus_only_unless_the_flag_says(tiny_data, tmp_path, capsys):
    base = ["--metadata", str(tiny_data / "train_metadata.csv"), "--audio-root", str(tiny_data / "train_audio"),
            "--out", str(tmp_path / "run")]
    expect = {None: ("auto", False, True), "--prefetch": (True, True, True), "--no-prefetch": (False, False, False)}
    for flag, (value, cpu, cuda) in expect.items():
        code, out = print_config([*base, *([flag] if flag else [])], capsys)
        cfg = TrainConfig.model_validate_json(out)
        assert code == 0 and cfg.prefetch == value, flag
        assert (cfg.prefetch_on("cpu"), cfg.prefetch_on("cuda")) == (cpu, cuda), flag
