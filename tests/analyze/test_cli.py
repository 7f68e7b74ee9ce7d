"""The command line: input discovery, and bad input reported as a message naming it, never a traceback."""

from __future__ import annotations

import json
import shutil

import pytest

from soundscape.analyze import find_inputs

from .conftest import run_cli


def test_folder_walk_and_globs(recordings, tmp_path):
    walked = find_inputs([str(recordings)])
    assert [f.rel for f in walked] == ["broken", "dawn_01", "dawn_02", "site2/night"]
    globbed = find_inputs([str(recordings / "**" / "*.ogg"), str(recordings / "dawn_0[12].*")])
    assert [f.rel for f in globbed] == ["dawn_01", "dawn_02", "site2/night"]
    (tmp_path / "a").mkdir()
    shutil.copy(recordings / "dawn_02.flac", tmp_path / "a" / "dawn_01.flac")
    with pytest.raises(ValueError, match="dawn_01"):
        find_inputs([str(recordings / "dawn_01.wav"), str(tmp_path / "a")])
    with pytest.raises(ValueError, match="nothing-here"):
        find_inputs([str(tmp_path / "nothing-here")])


def test_cli_runs_with_a_model_folder_and_reports_failures(recordings, store_root, tmp_path):
    res = run_cli(str(recordings), "--out", str(tmp_path / "out"), "--model", str(store_root / "birds" / "v1"),
                  "--format", "csv,audacity", "--top-k", "1", "--threshold", "0")
    assert res.returncode == 1, res.stderr  # one file failed; the others completed
    summary = json.loads(res.stdout)
    assert summary["files"]["done"] == 3 and summary["failures"] == 1
    labels = (tmp_path / "out" / "dawn_02.labels.txt").read_text().splitlines()
    assert len(labels) == 6  # 30 s, top-1 per window


@pytest.mark.parametrize(("args", "message"), [
    (["{missing}"], "does not exist"),
    (["{rec}", "--species", "dodo"], "dodo"),
    (["{rec}", "--threshold", "1.5"], "--threshold"),
    (["{rec}", "--min-conf", "1.5"], "--threshold"),
    (["{rec}", "--hop-s", "0.5"], "--hop-s"),
    (["{rec}", "--format", "xml"], "--formats"),
    (["{rec}", "--model", "{tamper}"], "sha256"),
])
def test_bad_options_give_a_message_not_a_traceback(recordings, store_root, tmp_path, args, message):
    tamper = tmp_path / "tampered"
    shutil.copytree(store_root / "birds" / "v1", tamper)
    with open(tamper / "model.onnx", "ab") as f:
        f.write(b"\0")
    args = [a.format(missing=tmp_path / "missing.wav", rec=recordings / "dawn_02.flac", tamper=tamper)
            for a in args]
    res = run_cli(*args, "--out", str(tmp_path / "out"), "--store", str(store_root))
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_min_conf_still_works_with_a_warning(recordings, store_root, tmp_path):
    common = [str(recordings / "dawn_02.flac"), "--store", str(store_root), "--workers", "1"]
    old = run_cli(*common, "--out", str(tmp_path / "old"), "--min-conf", "0.4")
    new = run_cli(*common, "--out", str(tmp_path / "new"), "--threshold", "0.4")
    assert old.returncode == new.returncode == 0, old.stderr
    assert "--min-conf is deprecated, use --threshold" in old.stderr and "deprecated" not in new.stderr
    assert json.loads(old.stdout)["options"]["threshold"] == 0.4
    assert (tmp_path / "old" / "dawn_02.detections.csv").read_bytes() == (
        tmp_path / "new" / "dawn_02.detections.csv").read_bytes()
