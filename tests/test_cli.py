"""The ``soundscape`` dispatcher and ``soundscape models``, run as real subprocesses on a tmp store."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from model_store import MODEL_FILE
from soundscape.cli import VERBS
from tests.utils.models import make_store

REPO = Path(__file__).resolve().parents[1]


def soundscape(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "soundscape.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_top_level_help():
    out = soundscape("--help")
    assert out.returncode == 0
    for verb in VERBS:
        assert verb in out.stdout


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_has_help(verb):
    module = VERBS[verb][0]
    if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
        pytest.skip(f"verb {verb!r}: module {module} does not exist yet")
    out = soundscape(verb, "--help")
    assert out.returncode == 0, out.stderr
    assert "usage: soundscape" in out.stdout and "default" in out.stdout.lower()


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "store", versions=2)


def test_models_list_show_verify(store):
    out = soundscape("models", "list", "--store", str(store.root))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and lines[1].startswith("* birds v2") and lines[0].startswith("  birds v1")
    out = soundscape("models", "show", "1", "--store", str(store.root))
    assert out.returncode == 0 and json.loads(out.stdout)["version"] == 1
    out = soundscape("models", "verify", "--store", str(store.root))
    assert out.returncode == 0 and out.stdout.count("ok") == 2


def test_models_verify_fails_on_a_flipped_byte(store):
    path = store.version_dir("birds", 1) / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    out = soundscape("models", "verify", "--store", str(store.root))
    assert out.returncode == 1 and "FAIL birds v1" in out.stdout and "checksum_mismatch" in out.stdout


def test_models_promote_and_rollback(store):
    out = soundscape("models", "promote", "1", "--store", str(store.root))
    assert out.returncode == 0 and store.production("birds") == 1
    out = soundscape("models", "rollback", "--store", str(store.root))
    assert out.returncode == 0 and "v2" in out.stdout and store.production("birds") == 2
    out = soundscape("models", "promote", "5", "--store", str(store.root))
    assert out.returncode == 1 and "model_not_found" in out.stderr
    assert soundscape("models", "promote", "--store", str(store.root)).returncode == 2


def test_models_cleanup(store):
    (store.root / "birds" / ".incoming-dead").mkdir()
    out = soundscape("models", "cleanup", "--store", str(store.root))
    assert out.returncode == 0 and "removed 1" in out.stdout


def test_no_verb_prints_help_and_fails():
    out = soundscape()
    assert out.returncode == 2 and "usage: soundscape" in out.stdout
