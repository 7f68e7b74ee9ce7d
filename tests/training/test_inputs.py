"""Training inputs people have: one folder per species, Raven selection tables of long recordings, and the
eBird / BirdCLEF / plain taxonomy shapes, on the demo data converted to those shapes."""

import csv
import shutil
from pathlib import Path

import pytest

from soundscape.cli import main
from soundscape.demo import generate_dataset
from tests.training.conftest import fast_config
from training import TrainConfig, load_checkpoint, train
from training.config import RavenConfig
from training.data import AudioCache, ProblemReport, read_taxonomy
from training.inputs import raven_clips, raven_negatives, read_clips, read_raven

RAVEN_HEADER = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("inputs") / "demo", seed=0, size="tiny")


def species_folders(demo: Path, out: Path, per_species: int = 3) -> Path:
    """The demo's focal clips as <out>/<code>/<file>, ``per_species`` of each."""
    for folder in sorted((demo / "train_audio").iterdir()):
        (out / folder.name).mkdir(parents=True)
        for f in sorted(folder.iterdir())[:per_species]:
            shutil.copy(f, out / folder.name / f.name)
    return out


def labelled_windows(demo: Path) -> dict[str, list[tuple[float, str]]]:
    """``{soundscape_id: [(end_time, code)]}`` of the demo's labelled windows with a species."""
    out: dict[str, list[tuple[float, str]]] = {}
    with open(demo / "soundscape_labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            for code in row["birds"].split():
                if code != "nocall":
                    out.setdefault(row["soundscape_id"], []).append((float(row["end_time"]), code))
    return out


def raven_tables(demo: Path, out: Path, *, begin_path: bool) -> Path:
    """The demo's soundscape labels as Raven selection tables: each labelled window a box (in the spectrogram
    and waveform views, as Raven writes it), 1-8 kHz. ``begin_path``: one table for all the recordings with
    ``Begin Path`` and ``File Offset (s)`` (and a species column ``Annotation``); else one
    ``<recording>.Table.1.selections.txt`` per recording (species column ``Species``)."""
    out.mkdir(parents=True)
    windows = labelled_windows(demo)
    header = RAVEN_HEADER + (["Begin Path", "File Offset (s)", "Annotation"] if begin_path else ["Species"])
    rows: dict[str, list[list]] = {}
    clock = 0.0  # Raven's begin time runs over the table's files end to end
    for sid, boxes in sorted(windows.items()):
        table = "all" if begin_path else sid
        for end, code in boxes:
            n = len(rows.setdefault(table, [])) // 2 + 1
            for view in ("Spectrogram 1", "Waveform 1"):
                extra = [str(demo / "soundscapes" / f"{sid}.ogg"), end - 5, code] if begin_path else [code]
                rows[table].append([n, view, 1, clock + end - 5, clock + end, 1000.0, 8000.0, *extra])
        clock += 60.0 if begin_path else 0.0
    for table, lines in rows.items():
        with open(out / f"{table}.Table.1.selections.txt", "w", newline="") as f:
            writer = csv.writer(f, delimiter="\t")
            writer.writerow(header)
            writer.writerows(lines)
    return out


def codes_of(checkpoint: Path) -> list[str]:
    return [label["code"] for label in load_checkpoint(checkpoint)["labels"]]


def test_training_from_species_folders_end_to_end(demo, tmp_path):
    folders = species_folders(demo, tmp_path / "folders")
    cfg = fast_config(demo, tmp_path / "run", metadata=None, audio_root=None, species_dirs=folders)
    result = train(cfg)
    codes = sorted(p.name for p in folders.iterdir())
    assert codes_of(result.best_checkpoint) == codes
    names = {label["code"]: label["common_name"] for label in load_checkpoint(result.best_checkpoint)["labels"]}
    assert names["silwhi"] == "Silver Whistler"  # from the taxonomy
    assert {"padded_cmap", "macro_roc_auc"} <= set(result.metrics)


def test_training_from_raven_tables_end_to_end(demo, tmp_path):
    tables = raven_tables(demo, tmp_path / "raven", begin_path=False)
    cfg = fast_config(demo, tmp_path / "run", metadata=None, audio_root=None,
                      raven=RavenConfig(tables=tables, audio_dir=demo / "soundscapes"))
    result = train(cfg)
    assert codes_of(result.best_checkpoint) == sorted({c for b in labelled_windows(demo).values() for _, c in b})
    assert {"padded_cmap", "macro_roc_auc"} <= set(result.metrics)


def test_raven_boxes_become_crops_with_secondary_labels(demo, tmp_path):
    tables = raven_tables(demo, tmp_path / "raven", begin_path=True)
    cfg = RavenConfig(tables=tables, species_column="annotation")
    problems = ProblemReport()
    boxes = read_raven(cfg, problems)
    windows = labelled_windows(demo)
    assert len(boxes) == sum(len(b) for b in windows.values()) and not problems  # each box once, not per view
    sid, found = next((s, b) for s, b in windows.items() if len({e for e, _ in b}) < len(b))  # a shared window
    end = next(e for e, _ in found if sum(1 for x, _ in found if x == e) > 1)
    at = [b for b in boxes if b.recording.stem == sid and b.end == end]
    assert {b.begin for b in at} == {end - 5} and at[0].low_hz == 1000.0  # File Offset, not the running clock
    clips = raven_clips(at, 5.0)
    assert all(c.span == (end - 5, end) and c.secondary and c.primary not in c.secondary for c in clips)
    long_box = raven_clips([at[0].__class__(at[0].recording, 10.0, 22.0, "x")], 5.0)[0]
    assert long_box.span == (10.0, 22.0)


def test_raven_negative_windows_avoid_every_box(demo, tmp_path):
    tables = raven_tables(demo, tmp_path / "raven", begin_path=False)
    cfg = fast_config(demo, tmp_path / "run", metadata=None, audio_root=None,
                      raven=RavenConfig(tables=tables, audio_dir=demo / "soundscapes", negatives_per_recording=3))
    cache = AudioCache(tmp_path / "cache", cfg.frontend.sample_rate)
    negatives = raven_negatives(cfg, cache, ProblemReport())
    assert 0 < len(negatives) <= 3 * len(labelled_windows(demo))
    assert all(len(w) == cfg.frontend.window_samples for w in negatives)


def test_raven_problems_are_reported_not_fatal(demo, tmp_path):
    tables = tmp_path / "t.txt"
    tables.write_text("\t".join(RAVEN_HEADER + ["code"]) + "\n"
                      "1\tSpectrogram 1\t1\t2\t4\t1000\t8000\tsilwhi\n"
                      "2\tSpectrogram 1\t1\t5\t3\t1000\t8000\tsilwhi\n"
                      "3\tSpectrogram 1\t1\t5\t7\t1000\t8000\tnosuch\n"
                      "4\tSpectrogram 1\t1\t5\t7\t1000\t8000\t\n")
    shutil.copy(demo / "soundscapes" / "sc0000.ogg", tmp_path / "t.ogg")
    problems = ProblemReport()
    taxonomy = read_taxonomy(demo / "taxonomy.csv")
    boxes = read_raven(RavenConfig(tables=tables, audio_dir=tmp_path), problems, taxonomy)
    assert [(b.begin, b.code) for b in boxes] == [(2.0, "silwhi")]
    assert problems.counts() == {"bad_row": 2, "unknown_label": 1}
    with pytest.raises(ValueError, match="no species column"):
        read_raven(RavenConfig(tables=tables, audio_dir=tmp_path, species_column="Species"), problems)
    with pytest.raises(ValueError, match="no usable annotation box"):
        read_raven(RavenConfig(tables=tables, audio_dir=tmp_path / "elsewhere"), ProblemReport())


def test_species_folders_outside_the_taxonomy_are_reported(demo, tmp_path):
    folders = species_folders(demo, tmp_path / "folders", per_species=1)
    (folders / "zzznew").mkdir()
    shutil.copy(next((folders / "silwhi").iterdir()), folders / "zzznew" / "a.wav")
    cfg = fast_config(demo, tmp_path / "run", metadata=None, audio_root=None, species_dirs=folders)
    problems = ProblemReport()
    clips, _ = read_clips(cfg, problems, read_taxonomy(demo / "taxonomy.csv"))
    assert "zzznew" not in {c.primary for c in clips} and problems.counts() == {"unknown_label": 1}
    assert len(clips) == len(list((demo / "train_audio").iterdir()))


@pytest.mark.parametrize("header, row", [
    (["TAXON_ORDER", "CATEGORY", "SPECIES_CODE", "PRIMARY_COM_NAME", "SCI_NAME", "ORDER1"],
     ["1", "species", "silwhi", "Silver Whistler", "Sibilator argenteus", "Passeriformes"]),  # eBird v2021
    (["primary_label", "inat_taxon_id", "common_name", "scientific_name", "class_name"],
     ["silwhi", "123", "Silver Whistler", "Sibilator argenteus", "Aves"]),  # BirdCLEF 2025
    (["Species_Code", "Common_Name"], ["silwhi", "Silver Whistler"]),  # plain, any case
])
def test_taxonomy_shapes(tmp_path, header, row):
    path = tmp_path / "taxonomy.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, row])
    scientific = "Sibilator argenteus" if len(header) > 2 else ""
    assert read_taxonomy(path) == {"silwhi": {"common_name": "Silver Whistler", "scientific_name": scientific}}


def test_taxonomy_without_a_code_column_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("name,latin\nx,y\n")
    with pytest.raises(ValueError, match="species code column"):
        read_taxonomy(path)


def test_cli_takes_every_input_shape_and_exactly_one(demo, tmp_path, capsys, caplog):
    folders = species_folders(demo, tmp_path / "folders", per_species=1)
    assert main(["train", "--species-dirs", str(folders), "--out", str(tmp_path / "r"), "--print-config"]) == 0
    assert TrainConfig.model_validate_json(capsys.readouterr().out).species_dirs == folders
    args = ["train", "--raven-tables", str(tmp_path), "--raven-audio", str(demo / "soundscapes"),
            "--raven-species-column", "Annotation", "--raven-negatives", "5", "--out", str(tmp_path / "r")]
    assert main([*args, "--print-config"]) == 0
    raven = TrainConfig.model_validate_json(capsys.readouterr().out).raven
    assert raven.species_column == "Annotation" and raven.negatives_per_recording == 5
    assert main([*args, "--species-dirs", str(folders), "--print-config"]) == 2
    assert "exactly one training input" in caplog.text
    assert main(["train", "--out", str(tmp_path / "r"), "--print-config"]) == 2
    assert "--species-dirs" in caplog.text
