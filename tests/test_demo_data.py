"""The synthetic demo dataset: determinism, BirdCLEF layout, decodability, labels, learnability, CLI."""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from soundscape.audio import Frontend, FrontendConfig, decode, probe
from soundscape.cli import main
from soundscape.demo import LABEL_MIN_OVERLAP_S, SIZES, generate_dataset

AUDIO_EXTS = {".wav", ".flac", ".ogg", ".mp3"}


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("demo") / "tiny", seed=0, size="tiny")


@pytest.fixture(scope="module")
def manifest(tiny: Path) -> dict:
    return json.loads((tiny / "dataset.json").read_text())


@pytest.fixture(scope="module")
def taxonomy(tiny: Path) -> dict[str, dict[str, str]]:
    return {r["primary_label"]: r for r in _rows(tiny / "taxonomy.csv")[1]}


def test_cli_refuses_non_empty_out_then_force_regenerates_identical_bytes(
        tiny: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    stale = out / "train_audio" / "oldbrd" / "oldbrd_000.wav"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale")
    (out / "notes.txt").write_text("mine")
    with caplog.at_level(logging.ERROR):
        assert main(["demo-data", str(out), "--seed", "0", "--size", "tiny"]) == 2
    assert str(out) in caplog.text and "--force" in caplog.text
    assert stale.exists() and not (out / "dataset.json").exists()

    assert main(["demo-data", str(out), "--seed", "0", "--size", "tiny", "--force"]) == 0
    assert "14 species, 50 clips, 3 soundscapes" in capsys.readouterr().out
    assert not stale.exists(), "--force must replace the dataset's own folders"
    assert (out / "notes.txt").read_text() == "mine", "--force must leave other files alone"
    (out / "notes.txt").unlink()
    assert _tree_hashes(out) == _tree_hashes(tiny)  # the same seed gives byte-identical files


def test_cli_help_shows_options_and_defaults(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo-data", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("OUT", "--seed", "--size", "{tiny,small,bench}", "--force", "(default: tiny)"):
        assert option in text


def test_other_seed_gives_other_data(tiny: Path, tmp_path: Path) -> None:
    other = generate_dataset(tmp_path / "seed1", seed=1, size="tiny")
    a, b = _tree_hashes(tiny), _tree_hashes(other)
    assert a.keys() - {"dataset.json"} <= b.keys() | {p for p in a if p.startswith("backgrounds/")}
    audio = [p for p in a if Path(p).suffix in AUDIO_EXTS and p in b]
    assert sum(a[p] != b[p] for p in audio) == len(audio)
    assert _rows(tiny / "soundscape_labels.csv") != _rows(other / "soundscape_labels.csv")


def test_bad_arguments_raise_value_error_naming_them(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="huge"):
        generate_dataset(tmp_path, size="huge")
    with pytest.raises(ValueError, match="-3"):
        generate_dataset(tmp_path, seed=-3)


def test_manifest_lists_every_file_with_its_hash(tiny: Path, manifest: dict) -> None:
    on_disk = _tree_hashes(tiny)
    assert on_disk.pop("dataset.json")
    assert manifest["files"] == on_disk
    assert manifest["seed"] == 0 and manifest["size"] == "tiny"
    counts = manifest["counts"]
    assert counts["train_clips"] == sum(SIZES["tiny"].clips_per_species) == 50
    assert counts["soundscapes"] == 3 and counts["windows"] == 36


def test_taxonomy_and_metadata_schema(tiny: Path, taxonomy: dict[str, dict[str, str]]) -> None:
    header, rows = _rows(tiny / "taxonomy.csv")
    assert header == ["primary_label", "common_name", "scientific_name", "call_type"]
    assert len(taxonomy) >= 12
    assert all(re.fullmatch(r"[a-z]{6}", code) for code in taxonomy)
    assert {r["call_type"] for r in rows} == {"whistle", "trill", "buzz", "chip", "song"}

    header, rows = _rows(tiny / "train_metadata.csv")
    assert header == ["primary_label", "secondary_labels", "filename", "rating", "common_name"]
    assert {r["primary_label"] for r in rows} == set(taxonomy)
    for r in rows:
        assert r["filename"].startswith(f"{r['primary_label']}/")
        assert (tiny / "train_audio" / r["filename"]).is_file()
        assert 1 <= int(r["rating"]) <= 5
        assert r["common_name"] == taxonomy[r["primary_label"]]["common_name"]
    assert {Path(r["filename"]).suffix for r in rows} == AUDIO_EXTS


def test_secondary_labels_are_python_lists_of_known_codes(tiny: Path, taxonomy: dict) -> None:
    rows = _rows(tiny / "train_metadata.csv")[1]
    parsed = [ast.literal_eval(r["secondary_labels"]) for r in rows]
    assert all(isinstance(p, list) for p in parsed)
    with_secondary = [(r, p) for r, p in zip(rows, parsed, strict=True) if p]
    assert with_secondary, "some clips must carry a faint secondary species"
    for r, p in with_secondary:
        assert set(p) <= set(taxonomy) and r["primary_label"] not in p


def test_long_tail_down_to_one_clip(tiny: Path) -> None:
    counts = Counter(r["primary_label"] for r in _rows(tiny / "train_metadata.csv")[1])
    assert min(counts.values()) == 1
    assert max(counts.values()) >= 5 * min(counts.values())
    small = SIZES["small"].clips_per_species
    assert min(small) == 1 and 380 <= sum(small) <= 420


def test_every_file_decodes_with_mixed_rates(tiny: Path) -> None:
    rates, clip_lengths = set(), []
    for path in sorted(tiny.rglob("*")):
        if path.suffix not in AUDIO_EXTS:
            continue
        audio = decode(path, sample_rate=32000)
        assert np.isfinite(audio.samples).all() and np.abs(audio.samples).max() > 0.01, path
        assert np.abs(audio.samples).max() <= 1.0, path
        if "train_audio" in path.parts:
            rates.add(audio.source_sample_rate)
            clip_lengths.append(audio.duration_s)
        elif "backgrounds" in path.parts:
            assert 10.0 <= audio.duration_s <= 20.1, path
    assert rates == {22050, 32000, 44100, 48000}
    assert min(clip_lengths) >= 3.0 and max(clip_lengths) <= 6.2  # tiny: 3-6 s (+ MP3 encoder padding)


def test_soundscapes_are_60_s_with_12_labelled_windows(tiny: Path, taxonomy: dict, manifest: dict) -> None:
    header, rows = _rows(tiny / "soundscape_labels.csv")
    assert header == ["row_id", "soundscape_id", "end_time", "birds"]
    files = sorted((tiny / "soundscapes").glob("*.ogg"))
    assert [p.stem for p in files] == sorted({r["soundscape_id"] for r in rows})
    rates = set()
    for path in files:
        info = probe(path)
        rates.add(info.sample_rate)
        assert info.frames == 60 * info.sample_rate and info.format == "OGG"
        mine = [r for r in rows if r["soundscape_id"] == path.stem]
        assert [int(r["end_time"]) for r in mine] == list(range(5, 61, 5))
        assert [r["row_id"] for r in mine] == [f"{path.stem}_{e}" for e in range(5, 61, 5)]
    assert rates == {32000, 48000}
    birds = [r["birds"].split() for r in rows]
    assert any(b == ["nocall"] for b in birds)
    assert any(len(b) >= 2 for b in birds), "some windows must hold overlapping species"
    assert all(b == ["nocall"] or set(b) <= set(taxonomy) for b in birds)
    # every labelled window is explained by a known species' phrases, and every phrase is labelled
    for sid, info in manifest["soundscapes"].items():
        labels = {int(r["end_time"]): set(r["birds"].split()) - {"nocall"} for r in rows if r["soundscape_id"] == sid}
        for ev in info["events"]:
            if not ev["labelled"]:
                continue
            for a, b in ev["phrases"]:
                need = min(0.5 * (b - a), LABEL_MIN_OVERLAP_S)
                ends = [e for e in range(5, 61, 5) if min(b, e) - max(a, e - 5) >= need]
                assert any(ev["species"] in labels[e] for e in ends), (sid, ev["species"], a, b)


def test_calls_cross_window_boundaries(manifest: dict) -> None:
    crossing = [(a, b) for info in manifest["soundscapes"].values() for ev in info["events"]
                for a, b in [(ev["start_s"], ev["end_s"])] if int(a // 5) != int(b // 5)]
    assert crossing


def test_unknown_species_are_heard_but_never_labelled(tiny: Path, manifest: dict, taxonomy: dict) -> None:
    unknown = set(manifest["unknown_species"])
    assert 1 <= len(unknown) <= 2 and not unknown & set(taxonomy)
    labelled = {b for r in _rows(tiny / "soundscape_labels.csv")[1] for b in r["birds"].split()}
    assert not unknown & labelled
    assert not unknown & {r["primary_label"] for r in _rows(tiny / "train_metadata.csv")[1]}
    cfg = FrontendConfig(normalize="none")
    frontend = Frontend(cfg)
    centres_hz = frontend.fb.argmax(axis=0) * cfg.sample_rate / cfg.n_fft
    band = (centres_hz >= 1000) & (centres_hz <= 12000)  # where birds sing, above wind and hum
    heard = []
    for sid, info in manifest["soundscapes"].items():
        audio = decode(tiny / "soundscapes" / f"{sid}.ogg", sample_rate=cfg.sample_rate)
        windows = frontend.windows(audio)
        images = frontend(windows.samples)  # (12, n_mels, frames) dB
        power = (10 ** (images[:, band] / 10)).mean(axis=1).ravel()  # per frame, in time order
        t = (windows.starts_s[:, None] + np.arange(images.shape[2]) * cfg.hop_length / cfg.sample_rate).ravel()
        busy = np.zeros_like(t, dtype=bool)
        for ev in info["events"]:
            busy |= (t >= ev["start_s"] - 0.3) & (t <= ev["end_s"] + 0.3)
        floor = np.median(power[~busy])
        for ev in info["events"]:
            if ev["species"] in unknown:
                inside = np.zeros_like(busy)
                for a, b in ev["phrases"]:
                    inside |= (t >= a) & (t <= b)
                heard.append(np.median(power[inside]) / floor)
    assert len(heard) >= 3
    assert min(heard) > 2.0, f"unknown species must be audible above the background: {heard}"


def test_species_are_distinguishable(tiny: Path) -> None:
    """Nearest-centroid on mean log-mel profiles (leave one out) beats chance by far: learnable data."""
    cfg = FrontendConfig(normalize="none")
    frontend = Frontend(cfg)
    rows = _rows(tiny / "train_metadata.csv")[1]
    profiles, labels = [], []
    for r in rows:
        audio = decode(tiny / "train_audio" / r["filename"], sample_rate=cfg.sample_rate)
        image = frontend(frontend.windows(audio).samples[:1])[0]  # (n_mels, frames) dB
        profile = image.max(axis=1)
        profiles.append(profile - profile.mean())
        labels.append(r["primary_label"])
    x, y = np.array(profiles), np.array(labels)
    species = [s for s, n in Counter(labels).items() if n >= 2]
    correct = total = 0
    for i in np.flatnonzero(np.isin(y, species)):
        keep = np.arange(len(y)) != i
        centroids = {s: x[keep & (y == s)].mean(axis=0) for s in species}
        guess = min(centroids, key=lambda s: float(((x[i] - centroids[s]) ** 2).sum()))
        correct += guess == y[i]
        total += 1
    within = np.mean([np.linalg.norm(x[y == s] - x[y == s].mean(0), axis=1).mean() for s in species])
    between = np.mean([np.linalg.norm(x[y == s].mean(0) - x[y == o].mean(0))
                       for s in species for o in species if s < o])
    assert correct / total >= 0.7, correct / total
    assert between > within
