"""The README's commands and requests run as written against the bundled model.

The sections on setting up, the quick start, the HTTP API, Docker, batch analysis and the Python API are read
from README.md: every ``bash`` line runs (``localhost:8000`` pointed at a real ``soundscape serve`` of the
bundled model on a free port), every ``python`` block runs, in a folder holding the recordings the commands
name, unless :data:`COVERED` names the test that runs it instead (a server on :8000, Docker, a Ray cluster).
A command that neither runs nor is covered fails the test, so new README commands cannot go untested. JSON
examples may only name species the bundled model knows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from model_store import ModelStore, default_store_path
from soundscape.demo import generate_dataset
from tests.utils.server import Server

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("Set up (fresh machine)", "Quick start", "HTTP API", "Docker", "Batch analysis", "Python API")
# commands (by their start) that are not run here, and what runs them
COVERED = {
    "make serve": "tests/test_setup.py: a fresh clone's `make serve` reaches /readyz (time, size, no torch)",
    "make test": "the suite itself (.ci/run)",
    "make docker-check": "tests/test_docker.py",
    "docker build": "tests/test_docker.py: make docker-check builds the Dockerfile with podman",
    "docker run": "tests/test_docker.py: the image's CMD served in a chroot of the image (no container runtime here)",
    "soundscape analyze /mnt/archive": "tests/analyze/test_ray.py: the Ray engine on a local Ray",
}
# what the commands read, made in their working folder from the demo soundscapes (60 s each; the bundled model
# was trained on the same synthetic species)
RECORDINGS = {"recording.ogg": 1, "recording.flac": 2, "site7.wav": 0, "recordings/dawn.ogg": 0,
              "recordings/dusk.flac": 1, "more/site2/night.flac": 2}


def sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """``## `` section -> its fenced blocks (language, body); ``###`` subsections belong to their section."""
    out: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for m in re.finditer(r"^## ([^\n]+)$|^```(\w*)\n(.*?)^```$", text, re.M | re.S):
        if m.group(1):
            current = m.group(1).strip()
        else:
            out.setdefault(current, []).append((m.group(2), m.group(3)))
    return out


def commands(body: str) -> list[str]:
    """A bash block's commands: continuation lines joined, blank lines dropped."""
    return [c for c in body.replace("\\\n", " ").splitlines() if c.strip()]


def covered(command: str) -> str | None:
    return next((why for start, why in COVERED.items() if command.startswith(start)), None)


def readme_blocks() -> dict[str, list[tuple[str, str]]]:
    found = sections((ROOT / "README.md").read_text())
    missing = [s for s in SECTIONS if s not in found]
    assert not missing, f"README sections not found: {missing}"
    return {s: found[s] for s in SECTIONS}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    demo = generate_dataset(tmp_path_factory.mktemp("readme-demo"), seed=0, size="tiny")
    soundscapes = sorted((demo / "soundscapes").glob("*.ogg"))
    cwd = tmp_path_factory.mktemp("readme")
    for rel, i in RECORDINGS.items():
        (cwd / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".ogg"):  # as generated (libsndfile's Vorbis encoder is not fed whole minutes)
            shutil.copyfile(soundscapes[i], cwd / rel)
        else:
            samples, rate = sf.read(soundscapes[i], dtype="float32")
            sf.write(cwd / rel, samples, rate)
    (cwd / "model_store").symlink_to(ROOT / "model_store")  # `--model model_store/default/birds/v2`
    return cwd


@pytest.fixture(scope="module")
def service(workdir) -> Server:
    srv = Server(workdir, default_store_path())
    yield srv
    srv.stop()


def run_bash(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", f"set -euo pipefail; {command}"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_every_command_of_the_sections_runs_or_is_covered():
    uncovered = [c for blocks in readme_blocks().values() for lang, body in blocks if lang == "bash"
                 for c in commands(body) if not covered(c) and not c.startswith(("curl ", "soundscape ", "printf "))]
    assert not uncovered, f"README commands this test neither runs nor knows a test for: {uncovered}"


@pytest.mark.slow
def test_quick_start_requests_run_as_written(service, workdir):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    requests = [c for _, body in readme_blocks()["Quick start"] for c in commands(body) if c.startswith("curl ")]
    assert len(requests) >= 5
    for command in requests:
        run = run_bash(command.replace("localhost:8000", f"127.0.0.1:{service.port}"), workdir)
        assert run.returncode == 0 and run.stdout.strip(), (command, run.stderr)
        try:
            doc = json.loads(run.stdout)
        except json.JSONDecodeError:  # a table: a header line and rows
            assert len(run.stdout.splitlines()) >= 2 and "error" not in run.stdout.splitlines()[0], command
            continue
        assert "error" not in doc, (command, doc)


@pytest.mark.slow
def test_batch_analysis_commands_run_as_written(workdir):
    ran = 0
    for _, body in readme_blocks()["Batch analysis"]:
        for command in commands(body):
            if covered(command):
                continue
            run = run_bash(command, workdir)
            assert run.returncode == 0, (command, run.stderr[-2000:])
            ran += 1
    assert ran >= 4
    assert (workdir / "results" / "dawn.kaleidoscope.csv").is_file()
    assert (workdir / "results" / "more" / "site2" / "night.json").is_file() or (
        workdir / "results" / "site2" / "night.json").is_file()
    assert (workdir / "site7" / "combined.selections.txt").is_file()
    assert (workdir / "results" / "dawn.embeddings.parquet").is_file()


@pytest.mark.slow
def test_python_api_example_runs_as_written(workdir):
    blocks = [body for lang, body in readme_blocks()["Python API"] if lang == "python"]
    assert blocks
    for body in blocks:
        run = subprocess.run([sys.executable, "-c", body], cwd=workdir, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        version = ModelStore(default_store_path()).production("birds")  # the README shows the bundled one's
        assert f"(12, 1280) {{'name': 'birds', 'version': {version}}}" in run.stdout


def test_examples_name_species_the_bundled_model_knows():
    store = ModelStore(default_store_path())
    card = store.card("birds", store.production("birds"))
    known = {c.casefold() for lab in card.labels for c in (lab.code, lab.common_name)}
    for name, blocks in readme_blocks().items():
        for lang, body in blocks:
            asked = [s.replace("%20", " ") for m in re.finditer(r"[?&]species=([^&'\s]+)", body)
                     for s in m[1].split(",")]
            if lang == "json":
                asked += [k for m in re.finditer(r'"(?:probabilities|summary)": (\{[^}]*\})', body)
                          for k in json.loads(m[1])]
            unknown = [s for s in asked if s.casefold() not in known]
            assert not unknown, f"README section {name!r} names species the bundled model does not know: {unknown}"
