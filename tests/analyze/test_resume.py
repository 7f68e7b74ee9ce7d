"""A run killed with SIGKILL mid-way resumes where it stopped and ends with the same outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import soundfile as sf

from .conftest import output_files, run_cli, tone_noise

N_FILES = 16
ARGS = ["--workers", "1", "--batch-size", "1", "--format", "csv", "json", "birdclef", "raven", "--no-progress"]


def test_killed_run_resumes_to_identical_outputs(store_root, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(N_FILES):
        sf.write(src / f"rec_{i:02d}.wav", tone_noise(60.0, 16000, i), 16000)
    killed, clean = tmp_path / "killed", tmp_path / "clean"

    proc = subprocess.Popen([sys.executable, "-m", "soundscape.cli", "--log-level", "WARNING", "analyze", str(src),
                             "--out", str(killed), "--store", str(store_root), *ARGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    journal = killed / "journal.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 3:
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its forkserver and its worker: one process group
    proc.wait()
    finished_before = journal.read_text().count("\n")
    assert 3 <= finished_before < N_FILES, "the run must be killed mid-way"
    assert not (killed / "summary.json").exists()

    resumed = run_cli(str(src), "--out", str(killed), "--store", str(store_root), *ARGS)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["files"]["skipped_finished"] >= finished_before
    assert summary["files"]["done"] == N_FILES

    assert run_cli(str(src), "--out", str(clean), "--store", str(store_root), *ARGS).returncode == 0
    assert output_files(killed) == output_files(clean)
    assert not [p for p in killed.rglob(".*") if p.is_file()], "no temp files left behind"
    keys = [json.loads(line)["key"] for line in journal.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == N_FILES, "no file was analysed twice"

    redo = run_cli(str(src), "--out", str(clean), "--store", str(store_root), "--no-resume", *ARGS)
    assert json.loads(redo.stdout)["files"]["analysed_this_run"] == N_FILES
    assert output_files(clean) == output_files(killed)
